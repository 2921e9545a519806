//! Checks on an event's payload beyond JSON syntax: what every adapter must be able to
//! parse. A pure function over JSON text that is already known to be valid.

/// Deepest nesting of arrays and objects accepted in `data`, the `data` object itself
/// counting as one. Adapters parse `data` with ordinary JSON libraries, many of which stop
/// at 128 levels (serde_json, Python's `json` near 1,000 but slowly); 64 leaves room for the
/// envelope around it.
pub const MAX_DEPTH: usize = 64;

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("`data` nests arrays and objects more than {MAX_DEPTH} levels deep")]
    TooDeep,
    /// A `\u` escape is half of a surrogate pair without its other half: not Unicode.
    #[error(
        "`data` holds a `\\u` escape of a lone UTF-16 surrogate (such as \\ud800), which is not a Unicode character"
    )]
    LoneSurrogate,
    /// A number too large for a 64-bit float (`1e999999`): receivers would read infinity.
    #[error("`data` holds a number too large to represent (such as 1e999999)")]
    NonFinite,
}

/// Checks JSON text that is syntactically valid (for example a `serde_json::RawValue`):
/// nesting depth, `\u` escapes that pair up, and numbers that fit a 64-bit float. One pass,
/// no allocation.
pub fn check(json: &str) -> Result<(), PayloadError> {
    let bytes = json.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = string_end(bytes, i + 1)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(PayloadError::TooDeep);
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    i += 1;
                }
                // Valid JSON number syntax is valid Rust float syntax; only the range can fail.
                let finite = json[start..i].parse::<f64>().is_ok_and(f64::is_finite);
                if !finite {
                    return Err(PayloadError::NonFinite);
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// The index just past the string whose contents start at `i`, checking its `\u` escapes.
fn string_end(bytes: &[u8], mut i: usize) -> Result<usize, PayloadError> {
    // Jump to the next quote or backslash (`memchr`'s vectorized search): the bytes of a
    // string between them need no look.
    while let Some(at) = memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) {
        i += at;
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                let unit = hex4(bytes, i + 2);
                i += 6;
                match unit {
                    Some(0xD800..=0xDBFF) => {
                        let low = (bytes.get(i) == Some(&b'\\') && bytes.get(i + 1) == Some(&b'u'))
                            .then(|| hex4(bytes, i + 2))
                            .flatten();
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Err(PayloadError::LoneSurrogate);
                        }
                        i += 6;
                    }
                    Some(0xDC00..=0xDFFF) => return Err(PayloadError::LoneSurrogate),
                    _ => {}
                }
            }
            _ => i += 2,
        }
    }
    Ok(bytes.len())
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_payloads_pass() {
        for ok in [
            r#"{}"#,
            r#"{"a":[1,-2.5e3,{"b":null}],"s":"x\"y\\u0041 \ud83d\ude00 [{"}"#,
            r#"{"big":123456789012345678901234567890,"small":1e-999}"#,
            r#"{"e":"\u00e9\n\t"}"#,
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        let nested = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert_eq!(check(&format!("{{\"a\":{nested}}}")), Ok(()));
    }

    #[test]
    fn too_deep() {
        let nested = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert_eq!(
            check(&format!("{{\"a\":{nested}}}")),
            Err(PayloadError::TooDeep)
        );
        let attack = "[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(check(&attack), Err(PayloadError::TooDeep));
    }

    #[test]
    fn lone_surrogates() {
        for bad in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud800x"}"#,
            r#"{"a":"\udc00"}"#,
            r#"{"a":"\ud800\u0041"}"#,
            r#"{"\ud800":1}"#,
        ] {
            assert_eq!(check(bad), Err(PayloadError::LoneSurrogate), "{bad}");
        }
    }

    #[test]
    fn numbers_out_of_range() {
        for bad in [r#"{"a":1e999999}"#, r#"{"a":-1e400}"#, r#"{"a":[0,1E309]}"#] {
            assert_eq!(check(bad), Err(PayloadError::NonFinite), "{bad}");
        }
    }
}
