//! Small text helpers shared across modules.

/// `text` cut to at most `max` bytes on a character boundary, with `…` when it was cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

#[cfg(test)]
mod tests {
    #[test]
    fn cuts_on_a_char_boundary() {
        assert_eq!(super::truncate("abc", 5), "abc");
        assert_eq!(super::truncate("héllo", 2), "h…");
        assert_eq!(super::truncate("héllo", 3), "hé…");
    }
}
