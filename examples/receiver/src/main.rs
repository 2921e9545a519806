//! An example webhook receiver: prints every request it gets and checks the Standard
//! Webhooks signature with the `standardwebhooks` crate, the way a real receiver should.
//!
//! `example-receiver --listen 127.0.0.1:0 --secret whsec_... [--count N]`
//! prints `receiver listening on http://ADDR` first, and exits after N requests if asked.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use clap::Parser;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// The subscriptions' signing secret, to verify signatures.
    #[arg(long, env = "RECEIVER_SECRET")]
    secret: String,
    /// Exit after this many requests.
    #[arg(long)]
    count: Option<usize>,
}

struct Shared {
    webhook: standardwebhooks::Webhook,
    seen: AtomicUsize,
    done: Notify,
    count: Option<usize>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let listener = TcpListener::bind(&args.listen).await?;
    let shared = Arc::new(Shared {
        webhook: standardwebhooks::Webhook::new(&args.secret)
            .map_err(|e| format!("invalid secret: {e:?}"))?,
        seen: AtomicUsize::new(0),
        done: Notify::new(),
        count: args.count,
    });
    println!("receiver listening on http://{}", listener.local_addr()?);
    let accept = {
        let shared = Arc::clone(&shared);
        async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(Arc::clone(&shared), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = shared.done.notified() => {}
    }
    Ok(())
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let verdict = match shared.webhook.verify(&body, &parts.headers) {
        Ok(()) => "valid".to_owned(),
        Err(e) => format!("INVALID ({e:?})"),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let pretty = serde_json::from_slice::<serde_json::Value>(&body)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
    let n = shared.seen.fetch_add(1, Ordering::SeqCst) + 1;
    println!(
        "\n=== #{n} {} {}\nwebhook-id: {}\nwebhook-timestamp: {}\nwebhook-signature: {} -> {verdict}\n{pretty}",
        parts.method,
        parts.uri.path(),
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    if shared.count.is_some_and(|c| n >= c) {
        shared.done.notify_one();
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
