//! Credentials out of clear text: environment values that look like secrets become
//! `${secret:NAME}` references, declared under `secrets:`, and the operator is told which
//! `wharf secret set NAME` to run and where each value was in the compose project.
//!
//! A compose project keeps its passwords in `environment:`, in `env_file`s (often kept out of
//! version control) or in `.env` through `${VAR}`; wharf.yaml usually is in version control, so
//! none of those values may be copied into it. Values are compared in memory to give one secret
//! to every place that holds the same value (a database password and the URL that embeds it),
//! and are dropped with the registry: nothing here prints or returns a value.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use wharf_manifest::Span;

/// A secret the imported wharf.yaml uses, to be stored with `wharf secret set` before `up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretToSet {
    /// The name under `secrets:` and in `${secret:NAME}`.
    pub name: String,
    /// Every place in the compose project that held its value (at least one).
    pub sources: Vec<SecretSource>,
}

impl SecretToSet {
    /// The command that stores it; it reads the value from stdin (prompting on a terminal), so
    /// the value stays off the command line and out of shell history.
    pub fn command(&self) -> String {
        format!("wharf secret set {}", self.name)
    }

    /// Where to find the value, in words: the first source, and how many others share it.
    pub fn origin(&self) -> String {
        let first = &self.sources[0];
        let more = self.sources.len() - 1;
        let others = match more {
            0 => String::new(),
            1 => "; 1 other place holds the same value".to_owned(),
            n => format!("; {n} other places hold the same value"),
        };
        format!("{}{others}", first.describe())
    }
}

/// One place a secret's value was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSource {
    /// The compose key: `services.db.environment.POSTGRES_PASSWORD`, or
    /// `services.app.env_file` for a variable read from an env file.
    pub key: String,
    /// The environment variable that held it.
    pub variable: String,
    /// The env file it was read from, as written in the compose file.
    pub env_file: Option<String>,
    /// What part of the variable's value the secret is.
    pub origin: ValueOrigin,
    /// Where in the compose file (the env var, or the `env_file` entry).
    pub span: Span,
}

impl SecretSource {
    /// "`POSTGRES_PASSWORD` in services.db.environment", with the file or host variable.
    pub fn describe(&self) -> String {
        let line = self.span.line;
        let whose = match &self.env_file {
            Some(file) => format!(
                "`{}` in {file} (env_file of {}, line {line})",
                self.variable,
                self.service()
            ),
            None => format!("`{}` of {}, line {line}", self.variable, self.service()),
        };
        match &self.origin {
            ValueOrigin::Literal => format!("the value of {whose}"),
            ValueOrigin::UrlPassword => format!("the password in the URL of {whose}"),
            ValueOrigin::Host {
                variable,
                default_in_file,
            } => {
                let default = if *default_in_file {
                    ", or the default the compose file gives it"
                } else {
                    ""
                };
                format!(
                    "`${variable}` from your shell or the .env file beside the compose file{default}; used by {whose}"
                )
            }
        }
    }

    fn service(&self) -> &str {
        let rest = self.key.strip_prefix("services.").unwrap_or(&self.key);
        rest.split('.').next().unwrap_or(rest)
    }
}

/// How the compose project supplied a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueOrigin {
    /// Written out (in the compose file or an env file).
    Literal,
    /// The password part of a URL's `user:password@`.
    UrlPassword,
    /// Interpolated from the host's environment or `.env`: `${VARIABLE}` (with a default
    /// written in the compose file when `default_in_file`).
    Host {
        variable: String,
        default_in_file: bool,
    },
}

/// The key a host variable `${NAME}` is registered under: every spelling of it is one value.
pub(crate) fn host_key(variable: &str) -> String {
    format!("\0host:{variable}")
}

/// The secrets found so far, keyed by value so one value gets one secret.
#[derive(Default)]
pub(crate) struct Registry {
    by_value: HashMap<String, String>,
    secrets: IndexMap<String, SecretToSet>,
}

impl Registry {
    /// The secret holding the value known by any of `values` (its text as written, or another
    /// key that stands for the same value), named `wanted` unless that name holds another
    /// value, else `fallback`; the source is added to it. Returns the secret's name.
    pub(crate) fn name_for(
        &mut self,
        values: &[String],
        wanted: &str,
        fallback: &str,
        source: SecretSource,
    ) -> String {
        if let Some(name) = values.iter().find_map(|v| self.by_value.get(v)).cloned() {
            for value in values {
                self.by_value
                    .entry(value.clone())
                    .or_insert_with(|| name.clone());
            }
            if let Some(secret) = self.secrets.get_mut(&name) {
                secret.sources.push(source);
            }
            return name;
        }
        let name = self.free_name(&[secret_name(wanted), secret_name(fallback)]);
        for value in values {
            self.by_value.insert(value.clone(), name.clone());
        }
        self.secrets.insert(
            name.clone(),
            SecretToSet {
                name: name.clone(),
                sources: vec![source],
            },
        );
        name
    }

    fn free_name(&self, candidates: &[String]) -> String {
        if let Some(free) = candidates.iter().find(|c| !self.secrets.contains_key(*c)) {
            return free.clone();
        }
        let base = &candidates[candidates.len() - 1];
        (2..)
            .map(|n| format!("{base}_{n}"))
            .find(|c| !self.secrets.contains_key(c))
            .unwrap_or_else(|| base.clone())
    }

    /// The secrets whose value, as written in the compose project, occurs in `text`. Values
    /// under 10 characters are left out: a password of `postgres` or `wordpress` is also a
    /// user, a database and a probe's argument, which are no leak.
    pub(crate) fn found_in(&self, text: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .by_value
            .iter()
            .filter(|(value, _)| value.len() >= 10 && !value.starts_with('\0'))
            .filter(|(value, _)| text.contains(value.as_str()))
            .map(|(_, name)| name.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The secrets in the order they were found; the values are dropped here.
    pub(crate) fn finish(&mut self) -> Vec<SecretToSet> {
        self.by_value.clear();
        std::mem::take(&mut self.secrets).into_values().collect()
    }
}

/// The top-level `secrets:` mapping of the output: each with a description of its origin.
pub(crate) fn declarations(secrets: &[SecretToSet]) -> Value {
    let mut out = Map::new();
    for secret in secrets {
        let description = format!("imported from compose: {}", secret.origin());
        out.insert(secret.name.clone(), json!({ "description": description }));
    }
    Value::Object(out)
}

/// A name wharf accepts in `${secret:NAME}`: letters, digits and `_`, not starting with a digit.
pub(crate) fn secret_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        name.insert(0, '_');
    }
    name
}

/// Name words that make a variable a credential wherever they appear.
const SECRET_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWORDS",
    "PASSWD",
    "PASS",
    "PWD",
    "PASSPHRASE",
    "SECRET",
    "SECRETS",
    "TOKEN",
    "TOKENS",
    "CREDENTIAL",
    "CREDENTIALS",
    "CREDS",
    "PRIVATE",
    "PRIVKEY",
    "APIKEY",
    "SALT",
    "DSN",
];

/// Last words that make a secret-sounding name a setting about the secret, not the secret:
/// `POSTGRES_PASSWORD_FILE` is a path, `JWT_SECRET_EXPIRY` a duration.
const SETTING_WORDS: &[&str] = &[
    "FILE",
    "PATH",
    "DIR",
    "LENGTH",
    "LEN",
    "MIN",
    "MAX",
    "TTL",
    "EXPIRY",
    "EXP",
    "EXPIRES",
    "EXPIRATION",
    "LIFETIME",
    "TIMEOUT",
    "ENABLED",
    "ENABLE",
    "DISABLED",
    "DISABLE",
    "REQUIRED",
    "METHOD",
    "HEADER",
    "ALGORITHM",
    "ALG",
    "TYPE",
    "MODE",
    "NAME",
    "USER",
    "USERNAME",
    "URL",
    "URI",
    "ENDPOINT",
    "HOST",
    "PORT",
    "ROLES",
    "ROLE",
    "COST",
    "ROUNDS",
    "SIZE",
    "COUNT",
    "FORMAT",
    "ISSUER",
    "AUDIENCE",
    "AUD",
    "POLICY",
    "PROVIDER",
    "BACKEND",
    "STORE",
    "DRIVER",
];

/// Words of a switch about a secret: `MYSQL_ALLOW_EMPTY_PASSWORD`, `SKIP_PASSWORD_CHECK`.
const SWITCH_WORDS: &[&str] = &[
    "ALLOW", "SKIP", "NO", "REQUIRE", "DISABLE", "ENABLE", "USE", "RANDOM", "EMPTY",
];

/// Words before `KEY` that make it a credential anywhere in the name (`AWS_ACCESS_KEY_ID`).
const KEY_QUALIFIERS: &[&str] = &[
    "ACCESS",
    "SECRET",
    "PRIVATE",
    "API",
    "ENCRYPTION",
    "SIGNING",
    "MASTER",
    "LICENSE",
    "SERVICE",
    "ANON",
    "CRYPTO",
    "ENC",
    "AUTH",
    "SESSION",
    "HMAC",
    "JWT",
];

/// Whether an environment variable's name says it holds a credential. Word-based, so
/// `MONKEY` or `PASSTHROUGH` are not, and settings about a secret (`…_PASSWORD_FILE`,
/// `ALLOW_EMPTY_PASSWORD`) are not either.
pub(crate) fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let Some(last) = words.last() else {
        return false;
    };
    let switch = words[..words.len() - 1]
        .iter()
        .any(|w| SWITCH_WORDS.contains(w));
    if SETTING_WORDS.contains(last) || switch {
        return false;
    }
    if words.iter().any(|w| SECRET_WORDS.contains(w)) {
        return true;
    }
    let public = words.contains(&"PUBLIC");
    let key_last = matches!(*last, "KEY" | "KEYS");
    let qualified_key = words
        .windows(2)
        .any(|pair| matches!(pair[1], "KEY" | "KEYS") && KEY_QUALIFIERS.contains(&pair[0]));
    !public && (key_last || qualified_key)
}

/// Values that are switches, not secrets, even under a secret-sounding name.
pub(crate) fn is_switch(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "true" | "false" | "yes" | "no" | "on" | "off"
    )
}

/// If `value` is exactly one interpolation of a host variable (`$VAR`, `${VAR}`,
/// `${VAR:?err}`, `${VAR:-default}`), the variable's name and whether a default or error text
/// follows it.
pub(crate) fn host_reference(value: &str) -> Option<(&str, Option<&str>)> {
    if let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
        let end = inner
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(inner.len());
        let (name, rest) = inner.split_at(end);
        let valid = !name.is_empty() && !rest.contains('}') && !rest.contains('$');
        return valid.then_some((name, (!rest.is_empty()).then_some(rest)));
    }
    let name = value.strip_prefix('$')?;
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some((name, None))
}

/// An optional host variable with an empty default (`${VAR:-}`, `${VAR-}`): nothing is in clear
/// text, and a service that runs without it must not be blocked on an unset secret.
pub(crate) fn is_optional_empty(value: &str) -> bool {
    matches!(host_reference(value), Some((_, Some(":-" | "-"))))
}

/// The byte range of the password in a URL's `scheme://user:password@host`, if it has one.
/// `${…}` is skipped over, so `postgres://u:${PW}@${HOST}:5432/db` finds `${PW}`.
pub(crate) fn url_password(value: &str) -> Option<std::ops::Range<usize>> {
    let authority_start = value.find("://")? + 3;
    let bytes = value.as_bytes();
    let (mut depth, mut colon, mut at) = (0usize, None, None);
    for (i, &b) in bytes.iter().enumerate().skip(authority_start) {
        match b {
            b'{' => depth += 1,
            b'}' => depth = depth.saturating_sub(1),
            b'/' | b'?' | b'#' if depth == 0 => break,
            b':' if depth == 0 && colon.is_none() && at.is_none() => colon = Some(i),
            b'@' if depth == 0 => at = Some(i),
            _ => {}
        }
    }
    let (colon, at) = (colon?, at?);
    (colon < at && at > colon + 1).then_some(colon + 1..at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_hold_credentials() {
        for name in [
            "POSTGRES_PASSWORD",
            "DB_PASS",
            "SECRET_KEY_BASE",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID",
            "GITEA__database__PASSWD",
            "OTP_SECRET",
            "VAPID_PRIVATE_KEY",
            "ACTIVE_RECORD_ENCRYPTION_PRIMARY_KEY",
            "SENTRY_DSN",
            "ANON_KEY",
            "SUPABASE_SERVICE_KEY",
            "LOGFLARE_PUBLIC_ACCESS_TOKEN",
            "JWT_SECRET",
            "OPENAI_API_KEY",
            "smtp_password",
            "S3_PROTOCOL_ACCESS_KEY_SECRET",
        ] {
            assert!(looks_secret(name), "{name}");
        }
    }

    #[test]
    fn names_that_do_not() {
        for name in [
            "POSTGRES_USER",
            "POSTGRES_PASSWORD_FILE",
            "MYSQL_ALLOW_EMPTY_PASSWORD",
            "JWT_EXPIRY",
            "TOKEN_TTL",
            "MONKEY",
            "PASSTHROUGH",
            "KEYCLOAK_URL",
            "VAPID_PUBLIC_KEY",
            "NEXT_PUBLIC_SUPABASE_ANON_KEY",
            "PRIMARY_KEY_TYPE",
            "POSTGRES_HOST_AUTH_METHOD",
            "SECRET_STORE",
        ] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn host_references() {
        assert_eq!(host_reference("${PW}"), Some(("PW", None)));
        assert_eq!(host_reference("$PW"), Some(("PW", None)));
        assert_eq!(
            host_reference("${PW:?set it}"),
            Some(("PW", Some(":?set it")))
        );
        assert_eq!(host_reference("${PW:-}"), Some(("PW", Some(":-"))));
        assert_eq!(host_reference("x${PW}"), None);
        assert_eq!(host_reference("${A}${B}"), None);
        assert_eq!(host_reference("literal"), None);
        assert!(is_optional_empty("${OPENAI_API_KEY:-}"));
        assert!(!is_optional_empty("${PW:-changeme}"));
    }

    #[test]
    fn url_passwords() {
        let find = |url: &str| url_password(url).map(|r| url[r].to_owned());
        assert_eq!(
            find("postgres://app:s3cret@db:5432/app").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            find("postgres://u:${POSTGRES_PASSWORD}@${POSTGRES_HOST}:${POSTGRES_PORT}/db")
                .as_deref(),
            Some("${POSTGRES_PASSWORD}")
        );
        assert_eq!(find("redis://:pw@redis:6379/0").as_deref(), Some("pw"));
        assert_eq!(
            find("https://key@o0.ingest.sentry.io/1"),
            None,
            "a user only"
        );
        assert_eq!(find("http://db:5432/app"), None, "a port is not a password");
        assert_eq!(find("postgres://u:@db/app"), None, "empty");
        assert_eq!(find("not a url"), None);
    }

    #[test]
    fn one_value_one_secret_and_names_that_collide_get_the_service() {
        let source = |key: &str| SecretSource {
            key: key.to_owned(),
            variable: "X".to_owned(),
            env_file: None,
            origin: ValueOrigin::Literal,
            span: Span::default(),
        };
        let mut registry = Registry::default();
        let a = registry.name_for(
            &["v1".to_owned()],
            "DB_PASSWORD",
            "api_DB_PASSWORD",
            source("services.api.environment.DB_PASSWORD"),
        );
        let b = registry.name_for(
            &["v1".to_owned()],
            "POSTGRES_PASSWORD",
            "db_POSTGRES_PASSWORD",
            source("services.db.environment.POSTGRES_PASSWORD"),
        );
        let c = registry.name_for(
            &["v2".to_owned()],
            "DB_PASSWORD",
            "worker.DB_PASSWORD",
            source("services.worker.environment.DB_PASSWORD"),
        );
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("DB_PASSWORD", "DB_PASSWORD", "WORKER_DB_PASSWORD")
        );
        let secrets = registry.finish();
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[0].sources.len(), 2);
        assert_eq!(secrets[0].command(), "wharf secret set DB_PASSWORD");
    }
}
