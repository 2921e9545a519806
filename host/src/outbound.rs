//! The rules every outbound request follows, whoever shaped it (a subscription, an adapter):
//! receiver URLs are absolute http or https with a host, an endpoint is
//! `scheme://host:port`, and some headers only the engine sets.

use http::{HeaderName, HeaderValue, Uri};

/// `scheme://host:port` of a URL.
pub fn endpoint_key(url: &Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("http");
    format!("{scheme}://{}:{}", url.host().unwrap_or(""), port_of(url))
}

/// The URL's port, or its scheme's default (443 for https, 80 otherwise).
pub fn port_of(url: &Uri) -> u16 {
    url.port_u16()
        .unwrap_or(if url.scheme_str() == Some("https") {
            443
        } else {
            80
        })
}

/// Headers the engine or the connection owns: a subscription or adapter setting them would
/// break signing or HTTP framing, or reach a proxy or the receiver's front end with
/// connection-level meaning (the hop-by-hop headers of RFC 9110 section 7.6.1, and `expect`,
/// which would stall the request for a `100 Continue`). They are refused.
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("webhook-")
        || matches!(
            name.as_str(),
            "host"
                | "content-length"
                | "transfer-encoding"
                | "connection"
                | "user-agent"
                | "upgrade"
                | "te"
                | "trailer"
                | "keep-alive"
                | "proxy-connection"
                | "proxy-authorization"
                | "proxy-authenticate"
                | "expect"
                | "http2-settings"
        )
}

/// Why a receiver URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("`{url}` is not a valid URL ({reason})")]
    Invalid {
        /// The URL as given.
        url: String,
        /// The parser's complaint.
        reason: String,
    },
    /// Another scheme than http and https.
    #[error("`{0}` must start with http:// or https://")]
    Scheme(String),
    /// No host.
    #[error("`{0}` has no host")]
    NoHost(String),
}

/// Parses and checks a receiver URL: absolute, http or https, with a host.
pub fn parse_target_url(url: &str) -> Result<Uri, UrlError> {
    let shown = || crate::secret::redact_url(url);
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Invalid {
            url: shown(),
            reason: e.to_string(),
        })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(UrlError::Scheme(shown())),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(shown()));
    }
    Ok(uri)
}

/// Why a custom header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The engine sets it.
    #[error("header `{0}` is set by the engine or the connection and cannot be overridden")]
    Reserved(String),
    /// Not a header name.
    #[error("`{0}` is not a valid header name")]
    InvalidName(String),
    /// Not a header value (a control character, say).
    #[error("the value of header `{0}` is not valid")]
    InvalidValue(String),
}

/// Checks one custom header.
pub fn parse_header(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), HeaderError> {
    if is_reserved_header(name) {
        return Err(HeaderError::Reserved(name.to_owned()));
    }
    let name = HeaderName::try_from(name).map_err(|_| HeaderError::InvalidName(name.to_owned()))?;
    let value =
        HeaderValue::try_from(value).map_err(|_| HeaderError::InvalidValue(name.to_string()))?;
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(
            parse_target_url("ftp://x/")
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(parse_target_url("/relative").is_err());
        assert!(parse_target_url("http://127.0.0.1:9/hook").is_ok());
    }

    #[test]
    fn engine_and_hop_by_hop_headers_are_reserved() {
        for name in [
            "Webhook-Signature",
            "host",
            "Content-Length",
            "Keep-Alive",
            "proxy-connection",
            "Expect",
            "Proxy-Authorization",
        ] {
            assert!(is_reserved_header(name), "{name}");
            assert!(parse_header(name, "x").is_err(), "{name}");
        }
        for name in ["authorization", "x-api-key", "content-type", "accept"] {
            assert!(!is_reserved_header(name), "{name}");
        }
    }

    #[test]
    fn endpoint_keys_name_the_default_port() {
        let key = |u: &str| endpoint_key(&parse_target_url(u).unwrap());
        assert_eq!(
            key("https://hooks.example.com/x"),
            "https://hooks.example.com:443"
        );
        assert_eq!(key("http://10.0.0.1/x"), "http://10.0.0.1:80");
        assert_eq!(key("http://h:8080/x"), "http://h:8080");
    }
}
