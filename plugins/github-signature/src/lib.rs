//! The GitHub-style signature adapter: sends the standard envelope (or only the payload)
//! with a signature header in the receiver's own scheme, by default GitHub's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`. The same adapter serves
//! other HMAC-over-the-body schemes (`X-Nebula-Signature`, `X-DECNET-Signature`, VaulTLS
//! `sha256=`) through its settings.
//!
//! The MAC is computed by the engine with the subscription's signing secret, which never
//! enters the adapter; `rotate-secret` therefore updates it like the Standard Webhooks
//! signature. Receivers of this scheme take the secret as text, so give the subscription a
//! plain secret (`wasmhook secret --plain`) rather than a `whsec_` one. The Standard
//! Webhooks headers are sent as well.

use wasmhook_adapter::signing::{base64, hex, hmac_sha256};
use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request};

wasmhook_adapter::settings! {
    /// What a subscription can set.
    pub struct GithubSettings {
        /// The signature header's name.
        header: String = "X-Hub-Signature-256",
        /// Text before the MAC in the header's value; `none` for a bare MAC (a blank setting
        /// means unset, so it cannot say that).
        prefix: String = "sha256=",
        /// How the MAC is written: lower-case hex (GitHub) or base64.
        #[one_of("hex", "base64")]
        encoding: String = "hex",
        /// While a rotated-out secret still signs: `newest` sends one MAC, with the new
        /// secret (receivers that compare the whole header, as GitHub's libraries do);
        /// `all` sends one per active secret, comma-separated, newest first.
        #[one_of("newest", "all")]
        signatures: String = "newest",
        /// What to send: the standard envelope `{"id","type","timestamp","data"}`, or only
        /// the event's payload, byte for byte.
        #[one_of("envelope", "data")]
        body: String = "envelope",
        /// A header carrying the event type, such as `X-GitHub-Event`; none when unset.
        event_header: Option<String>,
        /// A header carrying the delivery's message id, such as `X-GitHub-Delivery`; none
        /// when unset.
        delivery_header: Option<String>,
    }
}

struct GithubSignature;

impl Adapter for GithubSignature {
    type Settings = GithubSettings;

    fn transform(
        event: Event,
        settings: GithubSettings,
        context: Context,
    ) -> Result<Action, Error> {
        let body = match settings.body.as_str() {
            "data" => event.data_json.clone(),
            _ => event.envelope(),
        };
        let macs = hmac_sha256(body.as_bytes());
        if macs.is_empty() {
            return Err(Error::new(
                "the subscription has no active signing secret to sign with",
            ));
        }
        let mut request = Request::post("application/json", body)
            .header(&settings.header, signature_value(&macs, &settings));
        if let Some(name) = &settings.event_header {
            request = request.header(name, event.kind.clone());
        }
        if let Some(name) = &settings.delivery_header {
            request = request.header(name, context.message_id.clone());
        }
        Ok(Action::deliver(request))
    }
}

/// The header value: `prefix` and the MAC in the chosen encoding, for the newest secret or,
/// with `signatures = "all"`, for each active one, comma-separated.
fn signature_value(macs: &[Vec<u8>], settings: &GithubSettings) -> String {
    let take = if settings.signatures == "all" {
        macs.len()
    } else {
        1
    };
    macs.iter()
        .take(take)
        .map(|mac| {
            let encoded = if settings.encoding == "base64" {
                base64(mac)
            } else {
                hex(mac)
            };
            let prefix = if settings.prefix == "none" {
                ""
            } else {
                &settings.prefix
            };
            format!("{prefix}{encoded}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

wasmhook_adapter::export_adapter!(GithubSignature);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wasmhook_adapter::testing;

    fn request(settings: &[(&str, &str)]) -> Request {
        let event = Event::new("pull_request.opened", json!({"number": 7, "title": "Fix"}));
        match testing::run::<GithubSignature>(&event, settings).expect("delivers") {
            Action::Deliver(request) => request,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    /// GitHub's own documented example: secret "It's a Secret to Everybody", payload
    /// "Hello, World!", signature 757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17.
    #[test]
    fn matches_githubs_documented_example() {
        testing::set_signing_secrets(&["It's a Secret to Everybody"]);
        let macs = hmac_sha256(b"Hello, World!");
        assert_eq!(
            hex(&macs[0]),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn signs_the_envelope_with_the_newest_secret_by_default() {
        testing::set_signing_secrets(&["new secret, at least 16", "old secret, at least 16"]);
        let r = request(&[("event_header", "X-GitHub-Event")]);
        let body = r.body_text();
        assert!(body.starts_with(r#"{"id":"evt_test","type":"pull_request.opened""#));
        let expected = format!("sha256={}", hex(&hmac_sha256(body.as_bytes())[0]));
        assert_eq!(
            r.header_value("X-Hub-Signature-256"),
            Some(expected.as_str())
        );
        assert_eq!(
            r.header_value("x-github-event"),
            Some("pull_request.opened")
        );
        assert_eq!(r.header_value("content-type"), Some("application/json"));
    }

    #[test]
    fn all_signatures_base64_and_payload_only() {
        testing::set_signing_secrets(&["new secret, at least 16", "old secret, at least 16"]);
        let r = request(&[
            ("signatures", "all"),
            ("encoding", "base64"),
            ("prefix", "none"),
            ("header", "X-Signature"),
            ("body", "data"),
            ("delivery_header", "X-Delivery"),
        ]);
        assert_eq!(r.body_text(), r#"{"number":7,"title":"Fix"}"#);
        let macs = hmac_sha256(&r.body);
        let expected = format!("{}, {}", base64(&macs[0]), base64(&macs[1]));
        assert_eq!(r.header_value("x-signature"), Some(expected.as_str()));
        assert_eq!(r.header_value("x-delivery"), Some("msg_test"));
    }

    #[test]
    fn no_secret_is_an_error() {
        testing::set_signing_secrets(&[]);
        let event = Event::new("x.y", json!({}));
        let err = testing::run::<GithubSignature>(&event, &[]).unwrap_err();
        assert!(err.message().contains("no active signing secret"));
    }
}
