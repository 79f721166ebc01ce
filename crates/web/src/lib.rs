//! The web chat that `parley dev` serves at `/`. Its files are built from
//! `clients/` (`npm ci && npm run build` writes them to `assets/`, where
//! they are committed) and embedded in the binary with `include_bytes!`:
//! four files known by name need no embedding crate, and the binary serves
//! the page with nothing beside it on disk.
//!
//! The router has a route per file and no fallback, so every other path
//! still gets the API's problem+json 404.

use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// One embedded file and the path it is served at.
pub struct Asset {
    pub path: &'static str,
    pub file: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the build writes to `assets/` (a test holds the two lists
/// together).
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        file: "index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../assets/index.html"),
    },
    Asset {
        path: "/app.js",
        file: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../assets/app.js"),
    },
    Asset {
        path: "/app.css",
        file: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/app.css"),
    },
    Asset {
        path: "/icon.svg",
        file: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/icon.svg"),
    },
];

/// The page loads its script, styles, icon and socket from its own origin
/// and nothing else; no inline script or style runs, no other site may
/// frame it, and forms post only to it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; font-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The files keep their names from one version to the next, so browsers
/// must ask again each time (`no-cache`); the ETag makes that a 304.
const CACHE_CONTROL: &str = "no-cache";

/// `/` and the files it loads.
pub fn router() -> Router {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        let etag = HeaderValue::from_str(&etag(asset.body))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &etag, &headers) }),
        )
    })
}

fn serve(asset: &'static Asset, etag: &HeaderValue, request: &HeaderMap) -> Response {
    let headers = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
    ];
    let unchanged = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag.to_str().unwrap_or_default()
        });
    if unchanged {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

/// A strong validator from the bytes (FNV-1a, 64 bits): the same file
/// gives the same tag in every build and on every instance.
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn the_embedded_files_are_exactly_what_the_build_writes() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.file.to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn the_page_loads_only_embedded_files_from_its_own_origin() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in &ASSETS[1..] {
            assert!(
                page.contains(&format!("\"{}\"", asset.path)),
                "{}",
                asset.path
            );
        }
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(!page.contains("<script>") && !page.contains("style="));
    }

    #[tokio::test]
    async fn a_matching_etag_is_a_304() {
        let app = router();
        let first = app
            .clone()
            .oneshot(Request::get("/app.js").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()[header::ETAG].clone();
        let again = app
            .oneshot(
                Request::get("/app.js")
                    .header(header::IF_NONE_MATCH, tag)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
}
