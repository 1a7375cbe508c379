//! Kubernetes names and label values from wharf's names, which allow what Kubernetes does not
//! (`_`, capitals, versions such as `1.4.0+build`).

use sha2::{Digest, Sha256};

/// The longest name this module makes: a DNS-1123 label, so the name also fits where a label is
/// required (a Service's name, a Pod's hostname prefix).
pub const MAX_NAME: usize = 63;

/// A DNS-1123 label from `text`: lowercase letters, digits and `-`, starting and ending with a
/// letter or digit, at most 63 characters. Anything else becomes `-`; a name that had to be
/// shortened keeps a hash of the whole so two long names stay apart.
pub fn dns_label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed = out.trim_matches('-');
    let name = if trimmed.is_empty() { "x" } else { trimmed };
    shorten(name, text, MAX_NAME)
}

/// `first-second` as a DNS-1123 label (the name of one version's objects: `api-1-4-0`).
pub fn joined(first: &str, second: &str) -> String {
    dns_label(&format!("{first}-{second}"))
}

/// A label value (at most 63 of `[A-Za-z0-9._-]`, starting and ending alphanumeric, or empty).
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    shorten(trimmed, text, MAX_NAME)
}

/// `name` cut to `max` characters with 8 hex digits of the original's hash at the end, when it
/// is longer; unchanged otherwise.
fn shorten(name: &str, original: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_owned();
    }
    let hash = hex::encode(&Sha256::digest(original.as_bytes())[..4]);
    let keep = name[..max - hash.len() - 1].trim_end_matches(['-', '.', '_']);
    format!("{keep}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn wharf_names_become_dns_labels() {
        assert_eq!(dns_label("api"), "api");
        assert_eq!(dns_label("Web_Front"), "web-front");
        assert_eq!(joined("api", "1.4.0"), "api-1-4-0");
        assert_eq!(joined("api", "v2+build.7"), "api-v2-build-7");
        let long = "a".repeat(100);
        let other = format!("{}b", "a".repeat(99));
        assert!(is_dns_label(&dns_label(&long)));
        assert_ne!(dns_label(&long), dns_label(&other));
        for odd in ["_x_", "--", "1.0", "ÄÖ", ""] {
            assert!(is_dns_label(&dns_label(odd)), "{odd}");
        }
    }

    #[test]
    fn label_values_keep_what_labels_allow() {
        assert_eq!(label_value("1.4.0"), "1.4.0");
        assert_eq!(label_value("v2+build"), "v2_build");
        assert_eq!(label_value("-x-"), "x");
        assert!(label_value(&"9".repeat(80)).len() <= 63);
    }
}
