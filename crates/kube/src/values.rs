//! wharf's symbolic references in a value (`${secret:NAME}`, `${PORT}`, …) as Kubernetes
//! dependent variables (`$(NAME)`), which the kubelet expands in `command`, `args` and `env`.

use wharf_manifest::INSTANCE_VARIABLES;

/// The variable a secret is exposed as when a value holds it inside other text
/// (`postgres://app:${secret:DB_PASSWORD}@db/app`): Kubernetes can only splice a variable
/// defined earlier in the container's `env`, so the secret gets one of its own.
pub fn secret_variable(secret: &str) -> String {
    format!("WHARF_SECRET_{secret}")
}

/// One value converted: the text for Kubernetes and the secrets it needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Converted {
    pub text: String,
    pub secrets: Vec<String>,
}

/// Converts `value`: instance variables become `$(PORT)`…, secrets `$(WHARF_SECRET_NAME)`,
/// and every literal `$` is doubled — `$$` is the kubelet's escape, so text such as `$(date)`
/// in a command reaches the program unchanged.
pub fn convert(value: &str) -> Converted {
    let mut out = Converted::default();
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        out.text.push_str(&rest[..start]);
        let after = &rest[start..];
        match reference(after) {
            Some((Reference::Secret(name), len)) => {
                out.text.push_str(&format!("$({})", secret_variable(name)));
                if !out.secrets.iter().any(|s| s == name) {
                    out.secrets.push(name.to_owned());
                }
                rest = &after[len..];
            }
            Some((Reference::Instance(name), len)) => {
                out.text.push_str(&format!("$({name})"));
                rest = &after[len..];
            }
            None => {
                out.text.push_str("$$");
                rest = &after[1..];
            }
        }
    }
    out.text.push_str(rest);
    out
}

enum Reference<'a> {
    Secret(&'a str),
    Instance(&'a str),
}

/// The reference `text` starts with, and its length.
fn reference(text: &str) -> Option<(Reference<'_>, usize)> {
    let inner = text.strip_prefix("${")?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    let len = end + 3;
    if let Some(secret) = name.strip_prefix("secret:") {
        return Some((Reference::Secret(secret), len));
    }
    INSTANCE_VARIABLES
        .contains(&name)
        .then_some((Reference::Instance(name), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_become_dependent_variables() {
        assert_eq!(convert("--port=${PORT}").text, "--port=$(PORT)");
        let url = convert("postgres://app:${secret:DB_PASSWORD}@db/app");
        assert_eq!(
            url.text,
            "postgres://app:$(WHARF_SECRET_DB_PASSWORD)@db/app"
        );
        assert_eq!(url.secrets, ["DB_PASSWORD"]);
        assert_eq!(convert("echo $(date) $HOME").text, "echo $$(date) $$HOME");
        assert_eq!(convert("${NOT_OURS}").text, "$${NOT_OURS}");
        assert_eq!(convert("plain").text, "plain");
    }
}
