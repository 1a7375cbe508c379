//! compose `env_file` and `environment` → wharf's `env` map, in compose's precedence:
//! files in order, then `environment` over them.
//!
//! Values keep their `${VAR}` text: wharf interpolates with compose's semantics, so the meaning
//! is unchanged. Single-quoted env-file values are literal in compose, so their `$` is escaped.
//! Credentials are the exception: they become `${secret:NAME}` (see `secrets.rs`).

use serde_json::{Map, Value, json};
use wharf_manifest::yaml::{Node, NodeKind};

use crate::secrets::{self, SecretSource, ValueOrigin};
use crate::service::{Service, scalar};
use crate::{ImportError, Importer};

/// The service's environment, env files first.
pub(crate) fn convert(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
) -> Result<Map<String, Value>, ImportError> {
    let mut env = Map::new();
    if let Some(files) = service.node.get("env_file") {
        for file in env_file_entries(imp, service, files) {
            read_env_file(imp, service, &file, &mut env)?;
        }
    }
    if let Some(environment) = service.node.get("environment") {
        environment_entries(imp, service, environment, &mut env);
    }
    Ok(env)
}

/// One `env_file` entry: the path as written, whether it must exist, and where it was written.
struct EnvFile<'n> {
    path: String,
    required: bool,
    node: &'n Node,
}

/// `env_file: .env`, `env_file: [a.env, b.env]`, or `env_file: [{path: a.env, required: false}]`.
fn env_file_entries<'n>(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    node: &'n Node,
) -> Vec<EnvFile<'n>> {
    let what = service.path("env_file");
    let items = match &node.kind {
        NodeKind::Seq(items) => items.iter().collect(),
        _ => vec![node],
    };
    let mut files = Vec::new();
    for item in items {
        if let NodeKind::Map(_) = item.kind {
            let Some(path) = item
                .get("path")
                .and_then(|p| scalar(imp, p, &format!("{what}.path")))
            else {
                imp.error(item.span, format!("`{what}`: an entry needs a `path`"));
                continue;
            };
            warn_format(imp, &what, item);
            let required = item.get("required").and_then(Node::as_str) != Some("false");
            files.push(EnvFile {
                path,
                required,
                node: item,
            });
        } else if let Some(path) = scalar(imp, item, &what) {
            files.push(EnvFile {
                path,
                required: true,
                node: item,
            });
        }
    }
    files
}

fn warn_format(imp: &mut Importer<'_>, what: &str, item: &Node) {
    if let Some(format) = item.get("format") {
        let message =
            format!("`{what}.format` is not carried over: the file is read as a plain .env file");
        imp.warn(format!("{what}.format"), format.span, message, None);
    }
}

fn read_env_file(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    file: &EnvFile<'_>,
    env: &mut Map<String, Value>,
) -> Result<(), ImportError> {
    match (imp.read_env_file)(&file.path) {
        Ok(text) => {
            let path = service.path("env_file");
            for (key, value) in parse_dotenv(&text) {
                let value = value.unwrap_or_else(|| from_host(&key));
                let place = Place {
                    path: &path,
                    key: &key,
                    span: file.node.span,
                    file: Some(&file.path),
                };
                let value = secure(imp, service, &place, value);
                env.insert(key, json!(value));
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && !file.required => Ok(()),
        Err(source) => Err(ImportError::EnvFile {
            path: file.path.clone(),
            span: file.node.span,
            source,
        }),
    }
}

/// A variable listed without a value takes the host's value, as compose does.
fn from_host(key: &str) -> String {
    format!("${{{key}:-}}")
}

/// `environment: [KEY=value, KEY]` or `environment: {KEY: value, KEY: null}`.
fn environment_entries(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    node: &Node,
    env: &mut Map<String, Value>,
) {
    let what = service.path("environment");
    match &node.kind {
        NodeKind::Seq(items) => {
            for item in items {
                let Some(text) = scalar(imp, item, &what) else {
                    continue;
                };
                let (key, value) = match text.split_once('=') {
                    Some((key, value)) => (key.to_owned(), value.to_owned()),
                    None => (text.clone(), from_host(&text)),
                };
                let path = format!("{what}.{key}");
                let place = Place {
                    path: &path,
                    key: &key,
                    span: item.span,
                    file: None,
                };
                let value = secure(imp, service, &place, value);
                env.insert(key, json!(value));
            }
        }
        NodeKind::Map(entries) => {
            for (key, value) in entries {
                let Some(key) = key.as_str() else { continue };
                let text = match &value.kind {
                    NodeKind::Null => from_host(key),
                    _ => scalar(imp, value, &format!("{what}.{key}")).unwrap_or_default(),
                };
                let path = format!("{what}.{key}");
                let place = Place {
                    path: &path,
                    key,
                    span: value.span,
                    file: None,
                };
                let text = secure(imp, service, &place, text);
                env.insert(key.to_owned(), json!(text));
            }
        }
        NodeKind::Null => {}
        NodeKind::Scalar { .. } => {
            imp.error(node.span, format!("`{what}` must be a list or a mapping"))
        }
    }
}

/// One environment variable and where it was written, for [`secure`].
struct Place<'a> {
    /// The compose key it is reported under: `services.db.environment.PW`, or
    /// `services.db.env_file`.
    path: &'a str,
    key: &'a str,
    span: wharf_manifest::Span,
    /// The env file it came from, as written.
    file: Option<&'a str>,
}

/// The value to write for one variable: itself, or with its credential replaced by a
/// `${secret:NAME}` (the whole value for a secret-sounding name, the password of a URL's
/// `user:password@` otherwise).
fn secure(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    place: &Place<'_>,
    value: String,
) -> String {
    if value.is_empty() || value.contains("${secret:") {
        return value;
    }
    let whole = secrets::looks_secret(place.key)
        && !secrets::is_switch(&value)
        && !secrets::is_optional_empty(&value);
    if whole {
        let name = register(imp, service, place, &value, false);
        return format!("${{secret:{name}}}");
    }
    let Some(range) = secrets::url_password(&value) else {
        return value;
    };
    let password = value[range.clone()].to_owned();
    let name = register(imp, service, place, &password, true);
    let mut out = value;
    out.replace_range(range, &format!("${{secret:{name}}}"));
    out
}

/// Whether an `env_file` entry is the `.env` compose interpolates the compose file from.
fn is_project_dotenv(path: &str) -> bool {
    matches!(path, ".env" | "./.env")
}

/// Finds or makes the secret for `value`; returns its name.
fn register(
    imp: &mut Importer<'_>,
    service: &Service<'_>,
    place: &Place<'_>,
    value: &str,
    in_url: bool,
) -> String {
    // A host variable is one secret whatever its spelling (`$PW`, `${PW}`, `${PW:?msg}`).
    let (origin, wanted, values) = match secrets::host_reference(value) {
        Some((variable, rest)) => {
            let default_in_file = rest.is_some_and(|r| r.starts_with(":-") || r.starts_with('-'));
            let origin = ValueOrigin::Host {
                variable: variable.to_owned(),
                default_in_file,
            };
            (
                origin,
                variable.to_owned(),
                vec![secrets::host_key(variable)],
            )
        }
        None if in_url => (
            ValueOrigin::UrlPassword,
            format!("{}_PASSWORD", place.key),
            vec![value.to_owned()],
        ),
        // A variable of the `.env` beside the compose file is also what `${NAME}` means
        // elsewhere in the file (compose interpolates from it), so both are one secret.
        None if place.file.is_some_and(is_project_dotenv) => (
            ValueOrigin::Literal,
            place.key.to_owned(),
            vec![value.to_owned(), secrets::host_key(place.key)],
        ),
        None => (
            ValueOrigin::Literal,
            place.key.to_owned(),
            vec![value.to_owned()],
        ),
    };
    let source = SecretSource {
        key: place.path.to_owned(),
        variable: place.key.to_owned(),
        env_file: place.file.map(str::to_owned),
        origin,
        span: place.span,
    };
    let fallback = format!("{}_{wanted}", service.name);
    // Reported through `Imported::secrets`, not as a warning: a warning is rendered with its
    // source line, and that line holds the value.
    imp.secrets.name_for(&values, &wanted, &fallback, source)
}

/// Parses a .env file the way compose reads one: `KEY=value` lines, `export` prefixes, `#`
/// comments, double quotes (with `\n`-style escapes), literal single quotes. A bare `KEY`
/// gives `None` (take the host's value).
pub(crate) fn parse_dotenv(text: &str) -> Vec<(String, Option<String>)> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        match line.split_once('=') {
            Some((key, value)) => pairs.push((key.trim().to_owned(), Some(dotenv_value(value)))),
            None => pairs.push((line.to_owned(), None)),
        }
    }
    pairs
}

fn dotenv_value(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(inner) = raw.strip_prefix('"') {
        return unescape_double(inner);
    }
    if let Some(inner) = raw.strip_prefix('\'') {
        let literal = inner.split_once('\'').map_or(inner, |(value, _)| value);
        return literal.replace('$', "$$");
    }
    let without_comment = raw.split_once(" #").map_or(raw, |(value, _)| value);
    without_comment.trim_end().to_owned()
}

/// The text of a double-quoted value up to its closing quote, with escapes resolved.
fn unescape_double(inner: &str) -> String {
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines() {
        let text = "# comment\n\nA=1\nexport B = two words \nC=\"x\\ny # not a comment\" # comment\nD='$LITERAL'\nE=v # comment\nF\nG=\n";
        let pairs = parse_dotenv(text);
        let expected = [
            ("A", Some("1")),
            ("B", Some("two words")),
            ("C", Some("x\ny # not a comment")),
            ("D", Some("$$LITERAL")),
            ("E", Some("v")),
            ("F", None),
            ("G", Some("")),
        ];
        let got: Vec<(&str, Option<&str>)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        assert_eq!(got, expected);
    }
}
