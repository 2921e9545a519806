//! Serves the API over HTTP/1.1 on hyper, with the limits a server open to the network
//! needs and `axum::serve` lacks: a header-read timeout, an idle timeout for kept-alive
//! connections, a body-read timeout, a connection cap under the open-file limit, and the
//! refusal of requests with both `Content-Length` and `Transfer-Encoding`.
//!
//! - `limits`: the limits, the cap's default, and when an idle connection is closed.
//! - `framing`: follows each connection's request bytes (head starts, ambiguous heads).
//! - `connection`: one connection: I/O wrapper, request accounting, timed bodies, watchdog.
//! - `listener`: the accept loop, the cap, eviction and graceful shutdown.

mod connection;
mod framing;
mod limits;
mod listener;

pub use connection::BodyReadTimeout;
pub use limits::{ServeLimits, max_connections};
pub use listener::serve;
