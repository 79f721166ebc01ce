//! Clients that hold connections without finishing their requests: a head
//! sent half-way (slowloris), a body that stalls, and enough of them to use
//! up the server's file descriptors.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{spawn_app_with, Deployment, Process, PASSWORD};

/// Reads until the server closes the connection, or `limit` passes; what
/// was read, and whether it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.http.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut s = TcpStream::connect(&app.addr).await.unwrap();
    s.write_all(b"POST /v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: applic")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a half-sent head still holds its connection after 10 s"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // An idle keep-alive connection is let go the same way.
    let mut idle = TcpStream::connect(&app.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        closed,
        "an idle connection is closed after the header timeout"
    );
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_and_changes_nothing() {
    let app = spawn_app_with(Deployment::new(), |c| {
        c.http.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let body = json!({"username": "slowpoke", "password": PASSWORD}).to_string();
    let mut s = TcpStream::connect(&app.addr).await.unwrap();
    let head = format!(
        "POST /v1/auth/register HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("application/problem+json"),
        "408 is a problem: {answer}"
    );
    assert!(closed, "the connection is closed after a 408");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Nothing was registered: the name is still free.
    app.register("slowpoke").await;
}

/// With a low file limit, connections that never send their headers use up
/// every descriptor: the accept loop keeps going, and once the header
/// timeout closes them `/healthz` answers again.
#[tokio::test]
async fn running_out_of_file_descriptors_does_not_stop_the_server() {
    let d = Deployment::new();
    let p = Process::spawn_after(
        "ulimit -n 256",
        &["dev"],
        &d,
        &["--header-read-timeout", "2"],
    )
    .await;
    let app = p.client().await;
    let mut held = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(&p.addr).await {
            Ok(mut s) => {
                let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n").await;
                held.push(s);
            }
            Err(_) => break,
        }
    }
    let started = Instant::now();
    let health = tokio::time::timeout(Duration::from_secs(20), app.get("/healthz", None))
        .await
        .expect("/healthz did not answer within 20 s of the flood");
    assert_eq!(health.status, 200);
    eprintln!(
        "{} half-open connections; /healthz answered after {:?}",
        held.len(),
        started.elapsed()
    );
}
