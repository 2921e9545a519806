//! Raw HTTP/1.1 over TCP, for what an HTTP client library will not send: partial heads,
//! bodies that never come, contradictory framing headers, forged `Host` headers.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// An answer read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The head, as text.
    pub head: String,
    /// The body as JSON (null if it is not JSON).
    pub json: Value,
}

/// Connects to an engine's `http://host:port` base URL.
pub async fn connect(base: &str) -> TcpStream {
    let addr = base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or a reset); `None` if it is still
/// open after `timeout`.
pub async fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(timeout, read).await.ok()?;
    Some(got)
}

/// Parses the first response in `bytes`.
pub fn parse_response(bytes: &[u8]) -> Option<RawResponse> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    // A body of known length ends there; a second response could follow.
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(body.len())
        .min(body.len());
    Some(RawResponse {
        status,
        head: head.to_owned(),
        json: serde_json::from_str(&body[..length]).unwrap_or(Value::Null),
    })
}

/// Sends `request` on a new connection and reads the answer until the server closes the
/// connection (send `Connection: close` unless the server is expected to close it).
pub async fn exchange(base: &str, request: &[u8]) -> RawResponse {
    let mut stream = connect(base).await;
    stream.write_all(request).await.expect("write");
    let bytes = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("the server answered and closed within 30 s");
    parse_response(&bytes).unwrap_or_else(|| {
        panic!(
            "not an HTTP response: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })
}
