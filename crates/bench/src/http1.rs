//! The send path's HTTP/1.1 client: keep-alive connections kept in a
//! stack, each request written in one `write` and its answer parsed in
//! place.
//!
//! The load generator shares the box's cores with the server, so every
//! microsecond it spends per send is one the server does not get. A
//! general-purpose client (reqwest over hyper's pool) spends several times
//! as much CPU per send, on URL parsing, header maps, a pool checkout and a
//! hop to the connection's own task; this one's cost is mostly the
//! kernel's (docs/perf/history.md has the figures).
//! Sends and history pages are the requests the benches make by the
//! thousand per second, so they go through here; everything else keeps
//! reqwest.

use std::{net::SocketAddr, sync::Mutex, time::Duration};

use anyhow::{bail, Context};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Longest a send may take before it counts as failed (status 0).
const TIMEOUT: Duration = Duration::from_secs(30);
/// An answer with a head or body larger than this is a protocol error.
const MAX_ANSWER: usize = 1024 * 1024;

/// An HTTP status and body.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when the server sent one (429, 503).
    pub retry_after: Option<Duration>,
}

/// Keep-alive connections to one server, reused last-in first-out so the
/// busiest ones stay warm.
pub struct Pool {
    addr: SocketAddr,
    host: String,
    /// Put before every request's path.
    prefix: String,
    idle: Mutex<Vec<Conn>>,
    /// [`TIMEOUT`]; shorter in tests.
    timeout: Duration,
}

struct Conn {
    stream: TcpStream,
    /// The request being written, then the answer being read; kept so a
    /// connection allocates once.
    buf: Vec<u8>,
}

impl Pool {
    /// `host` is what the `Host` header says (`127.0.0.1:8080`); `prefix`
    /// goes before every path (empty, or `/base` without a trailing slash).
    pub fn new(addr: SocketAddr, host: String, prefix: String) -> Self {
        Self {
            addr,
            host,
            prefix,
            idle: Mutex::new(Vec::new()),
            timeout: TIMEOUT,
        }
    }

    /// `POST path` with a JSON body and no token.
    pub async fn post_public(&self, path: &str, json: &str) -> anyhow::Result<Answer> {
        self.request("POST", path, "", Some(json)).await
    }

    /// `POST path` with a JSON body and a bearer token.
    pub async fn post_json(&self, path: &str, token: &str, json: &str) -> anyhow::Result<Answer> {
        self.request("POST", path, token, Some(json)).await
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Answer> {
        self.request("GET", path, token, None).await
    }

    /// One request on an idle connection, or a new one. A connection that
    /// failed or that the server asked to close is not reused.
    async fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        json: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let reused = idle.is_some();
        let mut conn = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        let mut exchanged = tokio::time::timeout(
            self.timeout,
            conn.exchange(&self.host, method, &self.prefix, path, token, json),
        )
        .await
        .context("no answer in time")?;
        // The server closes connections left idle past its header timeout;
        // one that ends before a byte of the answer did not take the
        // request, which goes again on a fresh connection.
        if reused && matches!(&exchanged, Err(e) if e.is::<Unanswered>()) {
            conn = self.connect().await?;
            exchanged = tokio::time::timeout(
                self.timeout,
                conn.exchange(&self.host, method, &self.prefix, path, token, json),
            )
            .await
            .context("no answer in time")?;
        }
        let (answer, keep) = exchanged?;
        if keep {
            if let Ok(mut v) = self.idle.lock() {
                v.push(conn);
            }
        }
        Ok(answer)
    }
}

impl Pool {
    async fn connect(&self) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect to {}", self.addr))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(1024),
        })
    }
}

/// The connection ended before any of the answer arrived.
#[derive(Debug)]
struct Unanswered;

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed before the answer")
    }
}

impl std::error::Error for Unanswered {}

impl Conn {
    /// One request and its answer; also whether the connection may be
    /// reused.
    async fn exchange(
        &mut self,
        host: &str,
        method: &str,
        prefix: &str,
        path: &str,
        token: &str,
        json: Option<&str>,
    ) -> anyhow::Result<(Answer, bool)> {
        use std::io::Write;
        self.buf.clear();
        write!(
            self.buf,
            "{method} {prefix}{path} HTTP/1.1\r\nhost: {host}\r\n"
        )?;
        if !token.is_empty() {
            write!(self.buf, "authorization: Bearer {token}\r\n")?;
        }
        match json {
            Some(json) => write!(
                self.buf,
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
                json.len()
            )?,
            None => self.buf.extend_from_slice(b"\r\n"),
        }
        self.stream.write_all(&self.buf).await?;
        self.buf.clear();
        loop {
            if self.buf.len() >= MAX_ANSWER {
                bail!("answer head larger than {MAX_ANSWER} bytes");
            }
            match read_more(&mut self.stream, &mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return Err(Unanswered.into()),
                Err(_) if self.buf.is_empty() => return Err(Unanswered.into()),
                Ok(0) => bail!("connection closed inside the answer head"),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            let httparse::Status::Complete(head_len) = head.parse(&self.buf)? else {
                continue;
            };
            let status = head.code.unwrap_or(0);
            let mut length = None;
            let mut retry_after = None;
            let mut keep = head.version == Some(1);
            for h in head.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    length = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok());
                } else if h.name.eq_ignore_ascii_case("retry-after") {
                    retry_after = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                } else if h.name.eq_ignore_ascii_case("connection") {
                    keep &= !h.value.eq_ignore_ascii_case(b"close");
                }
            }
            // Every Parley answer carries a length; anything else (chunked,
            // read-until-close) is not worth supporting here.
            let length = length.context("answer without content-length")?;
            if length > MAX_ANSWER {
                bail!("answer body of {length} bytes");
            }
            while self.buf.len() < head_len + length {
                if read_more(&mut self.stream, &mut self.buf).await? == 0 {
                    bail!("connection closed inside the answer");
                }
            }
            // Nothing was asked for beyond this answer, so trailing bytes
            // mean the stream is out of step.
            keep &= self.buf.len() == head_len + length;
            let body = self.buf[head_len..head_len + length].to_vec();
            return Ok((
                Answer {
                    status,
                    body,
                    retry_after,
                },
                keep,
            ));
        }
    }
}

/// Appends what the socket has to `buf`; 0 at end of stream.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(4096);
    stream.read_buf(buf).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A peer that answers each request with the given byte chunks, written
    /// separately so the client sees the answer arrive in pieces. The
    /// requests it read come back through the receiver.
    async fn peer(
        answers: Vec<Vec<&'static [u8]>>,
    ) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            for chunks in answers {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                let _ = tx.send(buf[..n].to_vec());
                for c in chunks {
                    s.write_all(c).await.unwrap();
                    s.flush().await.unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        (addr, rx)
    }

    fn idle(pool: &Pool) -> usize {
        pool.idle.lock().unwrap().len()
    }

    #[tokio::test]
    async fn an_answer_in_pieces_is_read_whole_and_the_connection_kept() {
        let (addr, mut requests) = peer(vec![vec![
            b"HTTP/1.1 202 Accepted\r\ncontent-le",
            b"ngth: 11\r\n\r\n{\"a\":",
            b"\"bcd\"}",
        ]])
        .await;
        let pool = Pool::new(addr, addr.to_string(), "/base".into());
        let a = pool.post_json("/v1/messages", "t", "{}").await.unwrap();
        assert_eq!(
            String::from_utf8(requests.recv().await.unwrap()).unwrap(),
            format!(
                "POST /base/v1/messages HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer t\r\n\
                 content-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}"
            ),
            "the base URL's path, the token and the body's length are on the wire"
        );
        assert_eq!(a.status, 202);
        assert_eq!(a.body, b"{\"a\":\"bcd\"}");
        assert_eq!(
            idle(&pool),
            1,
            "a complete keep-alive answer keeps its connection"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_or_breaks_is_not_reused() {
        let (addr, _) = peer(vec![vec![
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno",
        ]])
        .await;
        let pool = Pool::new(addr, addr.to_string(), String::new());
        let a = pool.get("/x", "t").await.unwrap();
        assert_eq!((a.status, a.body.as_slice()), (400, &b"no"[..]));
        assert_eq!(idle(&pool), 0);

        let (addr, _) = peer(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc",
        ]])
        .await;
        let pool = Pool::new(addr, addr.to_string(), String::new());
        assert!(
            pool.get("/x", "t").await.is_err(),
            "a body cut short is an error"
        );
        assert_eq!(idle(&pool), 0);
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_closed_meanwhile_is_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // Answers once and closes; then answers on a new connection.
            for status in ["200 OK", "429 Too Many Requests"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await.unwrap();
                let answer =
                    format!("HTTP/1.1 {status}\r\nretry-after: 3\r\ncontent-length: 0\r\n\r\n");
                s.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let pool = Pool::new(addr, addr.to_string(), String::new());
        assert_eq!(pool.get("/x", "t").await.unwrap().status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let a = pool.get("/x", "t").await.unwrap();
        assert_eq!(a.status, 429);
        assert_eq!(a.retry_after, Some(Duration::from_secs(3)));
    }

    #[tokio::test]
    async fn a_server_that_is_down_or_silent_is_an_error_not_a_hang() {
        let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let pool = Pool::new(addr, addr.to_string(), String::new());
        let e = pool.get("/x", "t").await.err().expect("nothing listens");
        assert!(format!("{e:#}").contains(&addr.to_string()), "{e:#}");

        // Accepts, reads the request, never answers.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        });
        let mut pool = Pool::new(addr, addr.to_string(), String::new());
        pool.timeout = Duration::from_millis(200);
        let e = pool.get("/x", "t").await.err().expect("no answer");
        assert!(format!("{e:#}").contains("no answer in time"), "{e:#}");
        assert_eq!(idle(&pool), 0, "a connection that timed out is dropped");
    }
}
