//! One API connection: hyper serves it over an I/O wrapper that follows the request stream
//! (`framing`), the service wrapper counts the requests in flight and bounds how long a
//! body may take, and a watchdog closes the connection when a head is late or it has been
//! idle too long, or when the listener needs its slot.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse as _;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::Watcher;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower_service::Service as _;

use super::framing::{Framing, Seen};
use super::limits::{self, Activity, Closed, ServeLimits};
use crate::api::ApiError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the listener, the I/O wrapper, the service and the watchdog share about one
/// connection.
#[derive(Debug)]
pub struct Conn {
    shared: Mutex<Shared>,
    /// Wakes the watchdog: the activity changed, or the listener wants the slot.
    changed: Notify,
    /// Set by the listener at the cap: close as soon as no request is in flight.
    evict: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    activity: Activity,
    /// One entry per complete head not yet dispatched: whether it was ambiguous.
    heads: VecDeque<bool>,
}

impl Conn {
    /// A connection accepted now.
    pub fn new() -> Self {
        Self {
            shared: Mutex::new(Shared {
                activity: Activity::new(Instant::now()),
                heads: VecDeque::new(),
            }),
            changed: Notify::new(),
            evict: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When it became idle, if no request is in flight: the listener closes the one idle
    /// the longest when it needs a slot.
    pub fn idle_since(&self) -> Option<Instant> {
        let shared = self.lock();
        (shared.activity.in_flight == 0 && !self.evict.load(Ordering::Relaxed))
            .then_some(shared.activity.idle_since)
    }

    /// Asks the connection to close as soon as it is idle.
    pub fn evict(&self) {
        self.evict.store(true, Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn saw(&self, seen: impl Iterator<Item = Seen>) {
        let mut shared = self.lock();
        for event in seen {
            match event {
                Seen::HeadStarted => {
                    shared.activity.head_since.get_or_insert_with(Instant::now);
                }
                Seen::Head { ambiguous } => {
                    shared.heads.push_back(ambiguous);
                    shared.activity.head_since = None;
                }
            }
        }
        drop(shared);
        self.changed.notify_one();
    }

    /// A request was dispatched; returns whether its head was ambiguous.
    fn begin(&self) -> bool {
        let mut shared = self.lock();
        shared.activity.in_flight += 1;
        shared.heads.pop_front().unwrap_or(false)
    }

    fn end(&self) {
        let mut shared = self.lock();
        shared.activity.in_flight -= 1;
        if shared.activity.in_flight == 0 {
            shared.activity.idle_since = Instant::now();
        }
        drop(shared);
        self.changed.notify_one();
    }
}

/// Resolves when the connection must be closed, and why. It never resolves while a request
/// is in flight (an evicted connection finishes its request first).
async fn watchdog(conn: &Conn, limits: &ServeLimits) -> Closed {
    loop {
        let due = limits::deadline(&conn.lock().activity, limits);
        if due.is_some() && conn.evict.load(Ordering::Relaxed) {
            return Closed::Evicted;
        }
        match due {
            Some((at, why)) if at <= Instant::now() => return why,
            Some((at, _)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = conn.changed.notified() => {}
                }
            }
            None => conn.changed.notified().await,
        }
    }
}

/// Serves one accepted connection until the client closes it, the watchdog closes it, or
/// shutdown (through `watcher`) lets its last request finish.
pub async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ServeLimits,
    conn: Arc<Conn>,
    watcher: Watcher,
) {
    let io = TokioIo::new(Observed {
        stream,
        framing: Framing::default(),
        seen: Vec::new(),
        conn: Arc::clone(&conn),
    });
    let service = {
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |request| {
            handle(Arc::clone(&conn), router.clone(), limits, request)
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog does header and idle timeouts; hyper's own would close idle
    // kept-alive connections after the header timeout.
    builder.header_read_timeout(None::<Duration>);
    let connection = watcher.watch(builder.serve_connection(io, service));
    tokio::select! {
        result = connection => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "API connection ended with an error");
            }
        }
        why = watchdog(&conn, &limits) => {
            tracing::debug!(%peer, reason = why.reason(), "closed an API connection");
        }
    }
}

/// One request: refused at once if its head was ambiguous, else given to the router with
/// a body that must arrive within the body-read timeout.
async fn handle(
    conn: Arc<Conn>,
    mut router: Router,
    limits: ServeLimits,
    request: Request<Incoming>,
) -> Result<Response<Tracked>, Infallible> {
    let ambiguous = conn.begin();
    let guard = InFlight(conn);
    let response = if ambiguous {
        ambiguous_length()
    } else {
        let request = request.map(|body| {
            let deadline = (!body.is_end_stream())
                .then(|| Box::pin(tokio::time::sleep(limits.body_read_timeout)));
            axum::body::Body::new(TimedBody {
                inner: body,
                deadline,
                limit: limits.body_read_timeout,
            })
        });
        router.call(request).await?
    };
    Ok(response.map(|body| Tracked {
        inner: body,
        _guard: guard,
    }))
}

/// The answer to a request with both `Content-Length` and `Transfer-Encoding`.
fn ambiguous_length() -> axum::response::Response {
    let mut response = ApiError::new(
        StatusCode::BAD_REQUEST,
        "ambiguous_length",
        "the request has both Content-Length and Transfer-Encoding; send only one \
         (RFC 9112 section 6.3). The connection is closed",
    )
    .into_response();
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

/// Counts a request in flight until its answer is written (or dropped).
#[derive(Debug)]
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A response body that keeps its request counted as in flight until hyper is done with it.
#[derive(Debug)]
pub struct Tracked {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body did not arrive within `[server] body_read_timeout`. Body readers turn it into
/// `408 body_timeout`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the request body did not arrive within {}s ([server] body_read_timeout)",
    .0.as_secs_f64()
)]
pub struct BodyReadTimeout(pub Duration);

/// A request body that fails with [`BodyReadTimeout`] when it is not complete in time.
struct TimedBody {
    inner: Incoming,
    /// `None` for an empty body.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    limit: Duration,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(BoxError::from))),
            Poll::Pending => match this.deadline.as_mut().map(|d| d.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => {
                    Poll::Ready(Some(Err(Box::new(BodyReadTimeout(this.limit)))))
                }
                _ => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, with every byte read fed to the connection's [`Framing`].
struct Observed {
    stream: TcpStream,
    framing: Framing,
    /// Reused buffer for what the framing reports.
    seen: Vec<Seen>,
    conn: Arc<Conn>,
}

impl AsyncRead for Observed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            this.framing.feed(&buf.filled()[before..], &mut this.seen);
            if !this.seen.is_empty() {
                this.conn.saw(this.seen.drain(..));
            }
        }
        poll
    }
}

impl AsyncWrite for Observed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
