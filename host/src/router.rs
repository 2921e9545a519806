//! Routing: which subscriptions want an event type. Patterns live in a segment trie, so
//! matching costs the depth of the type, not the number of subscriptions.
//!
//! Pattern rules (the same as the adapter SDK's `type_matches`, in `sdk/rust/src/text.rs`):
//! - a literal segment matches itself;
//! - `*` anywhere but last matches exactly one segment (`host.*.failed`);
//! - `>` as the last segment matches one or more remaining segments, as in NATS
//!   (`host.>` matches `host.up` and `host.disk.full`, `>` alone matches every type);
//! - `*` as the last segment also matches one or more segments: that was wasmhook's only
//!   form before `>`, and existing subscriptions keep meaning what they meant.
//!
//! So a NATS user's `>` means the same here, and a NATS `*` in the middle too; a NATS
//! pattern ending in `*` (exactly one last token) has no exact form here and matches
//! deeper types as well. `docs/configuration.md` has the table.

use std::collections::HashMap;

/// An index of patterns to values (subscription indexes, in practice).
#[derive(Debug, Default)]
pub struct Router {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// Literal next segments.
    children: HashMap<Box<str>, Node>,
    /// A `*` that is followed by more segments.
    any_one: Option<Box<Node>>,
    /// Values whose pattern ends here.
    exact: Vec<usize>,
    /// Values whose pattern ends with a `>` (or a `*`) right after this node.
    rest: Vec<usize>,
}

impl Router {
    /// Adds `value` under `pattern`. The pattern must have passed `validate_pattern`.
    pub fn insert(&mut self, pattern: &str, value: usize) {
        let segments: Vec<&str> = pattern.split('.').collect();
        let mut node = &mut self.root;
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            if *segment == "*" || *segment == ">" {
                if last {
                    node.rest.push(value);
                    return;
                }
                node = node.any_one.get_or_insert_with(Box::default);
            } else {
                node = node.children.entry((*segment).into()).or_default();
            }
        }
        node.exact.push(value);
    }

    /// The values whose patterns match `event_type`, sorted and without duplicates.
    pub fn matching(&self, event_type: &str) -> Vec<usize> {
        let segments: Vec<&str> = event_type.split('.').collect();
        let mut out = Vec::new();
        self.root.collect(&segments, &mut out);
        out.sort_unstable();
        out.dedup();
        out
    }
}

impl Node {
    fn collect(&self, segments: &[&str], out: &mut Vec<usize>) {
        let Some((first, rest)) = segments.split_first() else {
            out.extend_from_slice(&self.exact);
            return;
        };
        out.extend_from_slice(&self.rest);
        if let Some(child) = self.children.get(*first) {
            child.collect(rest, out);
        }
        if let Some(any) = &self.any_one {
            any.collect(rest, out);
        }
    }
}

/// Why a subscription pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The empty string.
    #[error("an event pattern is empty; use `*` to match every type")]
    Empty,
    /// Longer than any event type can be.
    #[error(
        "an event pattern is longer than {} characters",
        crate::event::MAX_TYPE_LEN
    )]
    TooLong,
    /// A segment that is neither a word nor `*`.
    #[error(
        "invalid event pattern `{0}`: use dot-separated words, `*` segments and a final `>`, like `host.>`, `host.*.failed` or `cert.expiring`"
    )]
    Syntax(String),
    /// `>` somewhere but last.
    #[error(
        "invalid event pattern `{0}`: `>` matches the rest of the type, so it must be the last segment (`host.>`); use `*` for one segment in the middle"
    )]
    RestNotLast(String),
}

/// Checks a subscription pattern: dot-separated segments that are `*`, made of
/// `[A-Za-z0-9_-]`, or (last only) `>`.
pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    if pattern.is_empty() {
        return Err(PatternError::Empty);
    }
    if pattern.len() > crate::event::MAX_TYPE_LEN {
        return Err(PatternError::TooLong);
    }
    let mut segments = pattern.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segment == ">" {
            if segments.peek().is_some() {
                return Err(PatternError::RestNotLast(pattern.to_owned()));
            }
            continue;
        }
        let ok = segment == "*"
            || (!segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        if !ok {
            return Err(PatternError::Syntax(pattern.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(patterns: &[&str]) -> Router {
        let mut r = Router::default();
        for (i, p) in patterns.iter().enumerate() {
            validate_pattern(p).unwrap();
            r.insert(p, i);
        }
        r
    }

    #[test]
    fn literal_trailing_and_middle_wildcards() {
        let r = router(&["cert.expiring", "host.*", "*", "host.*.failed", "host"]);
        assert_eq!(r.matching("cert.expiring"), vec![0, 2]);
        assert_eq!(r.matching("cert.expiring.soon"), vec![2]);
        assert_eq!(r.matching("host.up"), vec![1, 2]);
        assert_eq!(r.matching("host.disk.failed"), vec![1, 2, 3]);
        assert_eq!(r.matching("host"), vec![2, 4]);
        assert_eq!(r.matching("other"), vec![2]);
    }

    /// NATS semantics: `*` is exactly one token, `>` one or more at the end.
    #[test]
    fn nats_style_patterns() {
        let r = router(&["host.>", ">", "host.*.failed", "a.*.>", "host.up.>"]);
        assert_eq!(r.matching("host.up"), vec![0, 1]);
        assert_eq!(r.matching("host.disk.full"), vec![0, 1]);
        assert_eq!(r.matching("host.disk.failed"), vec![0, 1, 2]);
        assert_eq!(r.matching("host.disk.failed.twice"), vec![0, 1]);
        // `>` needs at least one token: `host.>` does not match `host`.
        assert_eq!(r.matching("host"), vec![1]);
        // `a.*.>` needs three tokens or more.
        assert_eq!(r.matching("a.b"), vec![1]);
        assert_eq!(r.matching("a.b.c"), vec![1, 3]);
        assert_eq!(r.matching("a.b.c.d"), vec![1, 3]);
        assert_eq!(r.matching("host.up.now"), vec![0, 1, 4]);
    }

    /// A trailing `*` keeps its old meaning, the same as `>`.
    #[test]
    fn a_trailing_star_means_the_same_as_a_trailing_rest() {
        for ty in ["host", "host.up", "host.disk.full", "other.x"] {
            assert_eq!(
                router(&["host.*"]).matching(ty),
                router(&["host.>"]).matching(ty),
                "{ty}"
            );
            assert_eq!(
                router(&["*"]).matching(ty),
                router(&[">"]).matching(ty),
                "{ty}"
            );
        }
    }

    #[test]
    fn a_subscription_with_overlapping_patterns_matches_once() {
        let mut r = Router::default();
        r.insert("host.*", 7);
        r.insert("host.up", 7);
        r.insert("*", 7);
        assert_eq!(r.matching("host.up"), vec![7]);
    }

    #[test]
    fn nothing_matches_an_empty_router() {
        assert!(Router::default().matching("a.b").is_empty());
    }

    #[test]
    fn pattern_syntax() {
        for bad in [
            "", "host.", "ho*st", "a..b", "a b", "host.**", "a>", "a.>>", ">.b",
        ] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
        assert_eq!(
            validate_pattern("host.>.up"),
            Err(PatternError::RestNotLast("host.>.up".into()))
        );
        for ok in ["*", "a.*", "*.b", "a.*.c", "x-y_z.1", ">", "a.>", "*.>"] {
            validate_pattern(ok).unwrap();
        }
    }
}
