//! Small text helpers shared by the formats: truncation on character boundaries (receivers
//! count characters, and a cut inside a UTF-8 sequence would make the JSON invalid), lists
//! for humans, and RFC 3339 times.

/// `s` cut to at most `max` characters, the last one an ellipsis when something was cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `a, b, c` — or `none` for an empty list.
pub(crate) fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// RFC 3339 in UTC, the form every receiver parses.
pub(crate) fn time(at: jiff::Timestamp) -> String {
    at.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        // Multi-byte characters are counted as one and never split.
        assert_eq!(truncate("ééééé", 4), "ééé…");
        assert_eq!(truncate("ééééé", 4).chars().count(), 4);
    }

    #[test]
    fn list_says_none_when_empty() {
        assert_eq!(list(&[]), "none");
        assert_eq!(list(&["a".into(), "b".into()]), "a, b");
    }
}
