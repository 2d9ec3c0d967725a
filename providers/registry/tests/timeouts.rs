//! The client's inactivity timeout (`ClientOptions::timeout`) against small
//! hand-written servers on 127.0.0.1: silence fails a request, a slow but
//! progressing upload does not, whoever is slow (the registry taking the
//! bytes, or the body's own source).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::ok;
use futures::StreamExt;
use mirrorplan_registry::{
    ClientOptions, Digest, RegistryClient, RegistryError, RegistryTarget, RetryPolicy, Scheme,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn client(port: u16, timeout: Duration) -> RegistryClient {
    let t = RegistryTarget::new(Scheme::Http, format!("127.0.0.1:{port}"));
    let options = ClientOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        timeout,
        ..ClientOptions::default()
    };
    ok(RegistryClient::with_options(t, options), "client")
}

/// Reads a request head; returns (method, content length).
async fn head(sock: &mut TcpStream) -> Option<(String, u64)> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match sock.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(b[0]),
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let method = text.split(' ').next().unwrap_or_default().to_string();
    let len = text
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    Some((method, len))
}

/// An upload endpoint: `POST` opens a session, `PUT` is read in 256 KiB
/// pieces with `pause` after each (a registry slower than the timeout in
/// total, never silent for long), then answered `201`.
async fn slow_reader(pause: Duration) -> u16 {
    let l = ok(TcpListener::bind("127.0.0.1:0").await, "bind");
    let port = ok(l.local_addr(), "addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                while let Some((method, len)) = head(&mut sock).await {
                    let reply = if method == "POST" {
                        "HTTP/1.1 202 Accepted\r\nLocation: /v2/r/blobs/uploads/u1\r\nContent-Length: 0\r\n\r\n"
                    } else {
                        let mut left = len;
                        let mut piece = vec![0u8; 256 * 1024];
                        while left > 0 {
                            let want = piece.len().min(left as usize);
                            if sock.read_exact(&mut piece[..want]).await.is_err() {
                                return;
                            }
                            left -= want as u64;
                            tokio::time::sleep(pause).await;
                        }
                        "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
                    };
                    if sock.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn zeros(chunks: usize, chunk: usize) -> (Digest, u64, Vec<Bytes>) {
    let data = vec![0u8; chunk];
    let all: Vec<u8> = std::iter::repeat_n(&data[..], chunks)
        .flatten()
        .copied()
        .collect();
    let parts = (0..chunks).map(|_| Bytes::from(data.clone())).collect();
    (Digest::of(&all), all.len() as u64, parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_slower_than_the_timeout_in_total_is_not_cut() {
    // 32 MiB taken 256 KiB every 12 ms: about 1.5 s in all, against a
    // 1 s timeout; the registry is never silent for as long as that
    let port = slow_reader(Duration::from_millis(12)).await;
    let c = client(port, Duration::from_secs(1));
    let (digest, size, parts) = zeros(512, 64 * 1024);
    let body = futures::stream::iter(parts.into_iter().map(Ok));
    ok(
        c.upload_blob("r", &digest, size, body).await,
        "a slow, progressing upload",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_whose_source_pauses_longer_than_the_timeout_is_not_cut() {
    let port = slow_reader(Duration::ZERO).await;
    let c = client(port, Duration::from_secs(1));
    let (digest, size, parts) = zeros(3, 64 * 1024);
    // the body's own source (a bundle, another registry) is slow: 1.5 s
    // before each chunk; the registry is waiting, not late
    let body = futures::stream::iter(parts).then(|p| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(p)
    });
    ok(
        c.upload_blob("r", &digest, size, body).await,
        "an upload with a slow source",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_registry_times_out_after_bounded_retries() {
    let l = ok(TcpListener::bind("127.0.0.1:0").await, "bind");
    let port = ok(l.local_addr(), "addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let c = client(port, Duration::from_millis(500));
    let e = match c.head_manifest("r", "t").await {
        Err(e) => e,
        Ok(v) => panic!("a silent registry answered {v:?}"),
    };
    assert!(
        matches!(e, RegistryError::Timeout { attempts: 2, .. }),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "registry 127.0.0.1:{port} did not answer within 500ms"
        )),
        "{msg}"
    );
    assert!(e.is_fatal(), "a silent registry stops a push: {msg}");
}
