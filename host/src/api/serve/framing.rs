//! Follows the request stream of one connection as bytes are read, to see what hyper does
//! not show: where a request head starts (for the header-read timeout) and whether it
//! carried both `Content-Length` and `Transfer-Encoding` (hyper drops the former and goes
//! on; RFC 9112 section 6.3 says such a request may be smuggling and must close the
//! connection). Heads and chunk sizes are parsed with `httparse`, the parser hyper uses.
//! On anything it cannot follow it stops reporting, and hyper answers the client as usual.

/// Longest head followed, as hyper's default read buffer (about 400 KiB).
const MAX_HEAD: usize = 400 << 10;
/// Longest chunk-size or trailer line followed.
const MAX_LINE: usize = 8 << 10;
/// Most headers in a head, as hyper's default.
const MAX_HEADERS: usize = 100;

/// What the bytes just read revealed, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first byte of a request head arrived.
    HeadStarted,
    /// A head is complete. `ambiguous`: it had both `Content-Length` and
    /// `Transfer-Encoding`.
    Head {
        /// Both framing headers were present.
        ambiguous: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Between requests or inside a head (`buf` holds the head so far).
    Head,
    /// Inside a body of known length.
    Body(u64),
    /// Expecting a chunk-size line (`buf` holds it so far).
    ChunkSize,
    /// Inside chunk data, then its CRLF.
    ChunkData(u64),
    /// The CRLF after chunk data: bytes still expected.
    ChunkEnd(u8),
    /// Trailer lines after the last chunk, until an empty line.
    Trailers,
    /// Gave up (parse error, upgrade, oversized head); nothing more is reported.
    Stopped,
}

/// The follower of one connection's request bytes.
#[derive(Debug)]
pub struct Framing {
    state: State,
    buf: Vec<u8>,
}

impl Default for Framing {
    fn default() -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
        }
    }
}

impl Framing {
    /// Feeds bytes just read; appends what they revealed to `seen`.
    pub fn feed(&mut self, mut data: &[u8], seen: &mut Vec<Seen>) {
        while !data.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Head => {
                    if self.buf.is_empty() {
                        // Empty lines before a request line are allowed (RFC 9112 2.2).
                        let skip = data.iter().take_while(|b| matches!(b, b'\r' | b'\n'));
                        data = &data[skip.count()..];
                        if data.is_empty() {
                            return;
                        }
                        seen.push(Seen::HeadStarted);
                    }
                    data = self.head(data, seen);
                }
                State::Body(left) => {
                    let (left, rest) = skip(left, data);
                    data = rest;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkSize => {
                    let Some((line, rest)) = self.line(data) else {
                        return;
                    };
                    data = rest;
                    self.state = match httparse::parse_chunk_size(&line) {
                        Ok(httparse::Status::Complete((_, 0))) => State::Trailers,
                        Ok(httparse::Status::Complete((_, size))) => State::ChunkData(size),
                        _ => State::Stopped,
                    };
                }
                State::ChunkData(left) => {
                    let (left, rest) = skip(left, data);
                    data = rest;
                    self.state = if left == 0 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkEnd(left) => {
                    let want: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    let take = want.len().min(data.len());
                    if data[..take] != want[..take] {
                        self.state = State::Stopped;
                        return;
                    }
                    data = &data[take..];
                    self.state = match left - take as u8 {
                        0 => State::ChunkSize,
                        left => State::ChunkEnd(left),
                    };
                }
                State::Trailers => {
                    let Some((line, rest)) = self.line(data) else {
                        return;
                    };
                    data = rest;
                    if line == b"\r\n" || line == b"\n" {
                        self.state = State::Head;
                    }
                }
            }
        }
    }

    /// Takes one line (up to and including `\n`) into `buf`; returns it and the rest once
    /// it is complete.
    fn line<'a>(&mut self, data: &'a [u8]) -> Option<(Vec<u8>, &'a [u8])> {
        match data.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.buf.extend_from_slice(&data[..=end]);
                Some((std::mem::take(&mut self.buf), &data[end + 1..]))
            }
            None => {
                self.buf.extend_from_slice(data);
                if self.buf.len() > MAX_LINE {
                    self.state = State::Stopped;
                }
                None
            }
        }
    }

    /// Adds head bytes; once the head is complete, reports it, sets up its body and
    /// returns the bytes after it.
    fn head<'a>(&mut self, data: &'a [u8], seen: &mut Vec<Seen>) -> &'a [u8] {
        // A head read in one piece is parsed where it lies, so the body read with it is
        // not copied; one split over reads is gathered in `buf`, and only around the new
        // bytes is searched again, so a head sent one byte at a time costs linear work.
        let before = self.buf.len();
        if before > 0 {
            self.buf.extend_from_slice(data);
        }
        // The stream so far, and where a blank line can start in it.
        let (stream, from) = if before == 0 {
            (data, 0)
        } else {
            (&self.buf[..], before.saturating_sub(3))
        };
        let Some(end) = blank_line_end(&stream[from..]) else {
            if before == 0 {
                self.buf.extend_from_slice(data);
            }
            if self.buf.len() > MAX_HEAD {
                self.state = State::Stopped;
            }
            return &[];
        };
        let whole = if before == 0 {
            &data[..end]
        } else {
            &self.buf[..from + end]
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        let len = match request.parse(whole) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            _ => {
                self.state = State::Stopped;
                return &[];
            }
        };
        let mut length = None;
        let mut chunked = None;
        let mut upgrade = request.method == Some("CONNECT");
        for h in request.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok()),
                );
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default();
                chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        let ambiguous = length.is_some() && chunked.is_some();
        seen.push(Seen::Head { ambiguous });
        self.buf.clear();
        if len < before {
            // httparse ended the head on a blank line this scan does not take for one
            // (`\n\r\n`), in bytes already read: what follows it is not in `data`.
            self.state = State::Stopped;
            return &[];
        }
        self.state = match (chunked, length) {
            // hyper closes the connection after an ambiguous request, and refuses an
            // upgrade it was not asked to handle: nothing more to follow.
            _ if ambiguous || upgrade => State::Stopped,
            (Some(true), None) => State::ChunkSize,
            (Some(false), None) | (None, Some(None)) => State::Stopped,
            (None, Some(Some(0))) | (None, None) => State::Head,
            (None, Some(Some(n))) => State::Body(n),
            (Some(_), Some(_)) => State::Stopped,
        };
        // The head ends `len` bytes into the stream that started with `buf`.
        &data[len - before..]
    }
}

/// Where the first blank line (`\n\n` or `\r\n\r\n`) in `bytes` ends, found with
/// `memchr`'s vectorized search: the bytes read with a head usually carry its body too.
fn blank_line_end(bytes: &[u8]) -> Option<usize> {
    [&b"\n\n"[..], b"\r\n\r\n"]
        .iter()
        .filter_map(|end| memchr::memmem::find(bytes, end).map(|at| at + end.len()))
        .min()
}

/// Skips up to `left` bytes of `data`; returns how many are still to skip, and the rest.
fn skip(left: u64, data: &[u8]) -> (u64, &[u8]) {
    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
    (left - take as u64, &data[take..])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` in pieces of `step` bytes; returns everything seen.
    fn follow(stream: &[u8], step: usize) -> Vec<Seen> {
        let mut framing = Framing::default();
        let mut seen = Vec::new();
        for piece in stream.chunks(step) {
            framing.feed(piece, &mut seen);
        }
        seen
    }

    const PLAIN: Seen = Seen::Head { ambiguous: false };
    const SMUGGLED: Seen = Seen::Head { ambiguous: true };
    const START: Seen = Seen::HeadStarted;

    #[test]
    fn pipelined_requests_are_followed_through_their_bodies() {
        let stream = b"POST /v1/events HTTP/1.1\r\nHost: a\r\nContent-Length: 27\r\n\r\n\
            GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
            5;ext=1\r\nGET /\r\n0\r\nTrailer: x\r\n\r\n\
            GET /last HTTP/1.1\r\n\r\n";
        for step in [1, 2, 3, 7, 64, stream.len()] {
            // The first body looks like a request; it must be skipped as a body.
            assert_eq!(
                follow(stream, step),
                [START, PLAIN, START, PLAIN, START, PLAIN],
                "step {step}"
            );
        }
    }

    #[test]
    fn both_framing_headers_in_either_order_are_ambiguous() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
        ] {
            assert_eq!(follow(head.as_bytes(), 1), [START, SMUGGLED], "{head}");
        }
        // After a plain chunked request, a smuggled one on the same connection is seen too.
        let stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
            POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(follow(stream, 5), [START, PLAIN, START, SMUGGLED]);
    }

    #[test]
    fn a_partial_head_is_started_but_not_complete() {
        assert_eq!(
            follow(b"\r\nGET / HTTP/1.1\r\nHost: a\r\nX-Slow:", 1),
            [START]
        );
        assert_eq!(follow(b"\r\n\r\n", 1), []);
    }

    #[test]
    fn what_cannot_be_followed_stops_the_report() {
        // Garbage, an oversized head, a bad chunk size: nothing more is reported.
        assert_eq!(
            follow(b"\x16\x03\x01 not http\r\n\r\nGET / HTTP/1.1\r\n\r\n", 4),
            [START]
        );
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 1));
        huge.extend(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n");
        assert_eq!(follow(&huge, 4096), [START]);
        let stream =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        assert_eq!(follow(stream, 3), [START, PLAIN]);
    }

    #[test]
    fn heads_ended_by_bare_line_feeds_are_followed() {
        let stream = b"POST / HTTP/1.1\nContent-Length: 3\n\nabcGET / HTTP/1.1\nHost: a\n\n";
        for step in [1, 2, 3, 5, stream.len()] {
            assert_eq!(
                follow(stream, step),
                [START, PLAIN, START, PLAIN],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_head_that_ends_before_the_blank_line_scanned_for_stops_the_report() {
        // httparse ends this head at `\n\r\n`, which the scan does not take for a blank
        // line; when that end lies in bytes of an earlier read, the report stops (it used to
        // count back past the start of the bytes just read).
        let stream = b"GET / HTTP/1.1\n\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        for step in [1, 4, 20] {
            assert_eq!(follow(stream, step), [START, PLAIN], "step {step}");
        }
    }

    #[test]
    fn blank_lines_inside_bodies_and_across_reads_are_not_taken_for_head_ends() {
        // Bodies full of what would end a head, heads ended by either blank line: the
        // report is the same however the stream is cut into reads.
        let stream = b"POST /a HTTP/1.1\r\nContent-Length: 12\r\n\r\n\r\n\r\nx\n\n\r\n\r\nz\
            POST /b HTTP/1.1\nTransfer-Encoding: chunked\n\n4\r\n\n\n\n\n\r\n0\r\n\r\n\
            GET /c HTTP/1.1\r\nX: y\r\n\nGET /d HTTP/1.1\r\n\r\n";
        let whole = follow(stream, stream.len());
        assert_eq!(
            whole,
            [START, PLAIN, START, PLAIN, START, PLAIN, START, PLAIN]
        );
        for step in 1..=40 {
            assert_eq!(follow(stream, step), whole, "step {step}");
        }
    }
}
