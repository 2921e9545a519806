//! Egress through an HTTP proxy (`[delivery] proxy`): which destinations go through it
//! (`no_proxy`, with the `NO_PROXY` conventions curl uses, through hyper-util's matcher),
//! and the CONNECT tunnel to them (hyper-util's `Tunnel`).
//!
//! The SSRF guard still judges the destination: before asking the proxy for a tunnel, the
//! connector resolves the receiver's host itself and refuses it if any address is internal
//! (see `client::vet_proxied`). The proxy resolves the name again, so a name that resolves
//! differently there (split DNS, rebinding between the two lookups) is the proxy's to
//! refuse; docs/configuration.md says so. The proxy's own address is the operator's
//! choice and is not judged.

use std::fmt;

use http::{HeaderValue, Uri};
use hyper_util::client::proxy::matcher::Matcher;

/// Where deliveries go through the proxy, and how to reach it.
pub struct Proxy {
    matcher: Matcher,
    /// The proxy URL without credentials, for logs and errors.
    shown: String,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy").field("url", &self.shown).finish()
    }
}

/// The proxy a destination goes through, with its credentials if the URL had any.
#[derive(Debug, Clone)]
pub struct Route {
    /// `http://host:port` of the proxy.
    pub proxy: Uri,
    /// `Proxy-Authorization: Basic …` from the proxy URL's `user:password@`.
    pub auth: Option<HeaderValue>,
}

impl Proxy {
    /// A proxy at `url` (`http://[user:password@]host:port`) for every destination except
    /// those `no_proxy` names: comma-separated host names (a name also covers its
    /// subdomains; a leading `.` or `*.` means the same), IP addresses, CIDR ranges, or `*`
    /// for all.
    pub fn new(url: &str, no_proxy: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("[delivery] proxy `{}` is not a URL: {e}", redact(url)))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => {
                return Err(format!(
                    "[delivery] proxy `{}` uses `{other}://`; only `http://` proxies (which tunnel https with CONNECT) are supported",
                    redact(url)
                ));
            }
            None => {
                return Err(format!(
                    "[delivery] proxy `{}` needs a scheme: `http://host:port`",
                    redact(url)
                ));
            }
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(format!("[delivery] proxy `{}` has no host", redact(url)));
        }
        let matcher = Matcher::builder()
            .all(url.to_owned())
            .no(no_proxy.to_owned())
            .build();
        Ok(Self {
            matcher,
            shown: redact(url),
        })
    }

    /// The proxy for `dst`, or `None` when `dst` is reached directly (`no_proxy`).
    pub fn route(&self, dst: &Uri) -> Option<Route> {
        let intercept = self.matcher.intercept(dst)?;
        Some(Route {
            proxy: intercept.uri().clone(),
            auth: intercept.basic_auth().cloned(),
        })
    }

    /// The proxy URL without its credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// `url` with any `user:password@` replaced by `***@`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routed(proxy: &Proxy, url: &str) -> bool {
        proxy.route(&url.parse().unwrap()).is_some()
    }

    #[test]
    fn no_proxy_follows_the_usual_conventions() {
        let proxy = Proxy::new(
            "http://proxy.internal:3128",
            "internal.example, .corp.example,10.0.0.0/8,192.168.1.7",
        )
        .unwrap();
        assert!(routed(&proxy, "https://hooks.slack.com/x"));
        assert!(routed(&proxy, "http://example.com/"));
        // A name covers itself and its subdomains, with or without the leading dot.
        assert!(!routed(&proxy, "https://internal.example/h"));
        assert!(!routed(&proxy, "https://api.internal.example/h"));
        assert!(!routed(&proxy, "https://corp.example/h"));
        assert!(!routed(&proxy, "https://a.corp.example/h"));
        assert!(routed(&proxy, "https://notinternal.example/h"));
        // IP literals and ranges.
        assert!(!routed(&proxy, "http://10.1.2.3:8080/"));
        assert!(!routed(&proxy, "http://192.168.1.7/"));
        assert!(routed(&proxy, "http://192.168.1.8/"));
        let all = Proxy::new("http://proxy.internal:3128", "*").unwrap();
        assert!(!routed(&all, "https://hooks.slack.com/x"));
    }

    #[test]
    fn credentials_become_basic_auth_and_never_show() {
        let proxy = Proxy::new("http://egress:s3cret@proxy.internal:3128", "").unwrap();
        let route = proxy.route(&"https://r.example/".parse().unwrap()).unwrap();
        assert_eq!(route.proxy.host(), Some("proxy.internal"));
        assert_eq!(route.auth.unwrap(), "Basic ZWdyZXNzOnMzY3JldA==");
        assert_eq!(proxy.shown(), "http://***@proxy.internal:3128");
        assert!(!format!("{proxy:?}").contains("s3cret"));
    }

    #[test]
    fn only_http_proxies_with_a_host_are_accepted() {
        for (url, says) in [
            ("socks5://p:1080", "only `http://` proxies"),
            ("https://p:443", "only `http://` proxies"),
            ("proxy.internal:3128", "needs a scheme"),
            ("http://u:pw@", "not a URL"),
        ] {
            let err = Proxy::new(url, "").unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
