//! wharf.yaml: parse, overlay, interpolate, decode and validate a manifest into a typed stack.
//!
//! Pure: the crate reads only the text and variables it is given, so every check is fast to
//! test and cannot fail for outside reasons. The pipeline is
//! `yaml::parse → overlay → interpolate → schema (decode) → validate (cross-checks)`, and every
//! stage appends to one list of [`Diagnostic`]s so a user sees all problems at once.

mod container;
pub mod container_options;
mod decode;
pub mod diagnostic;
mod gates;
mod interpolate;
pub mod model;
mod overlay;
mod ports;
mod promotion;
mod runbooks;
mod schema;
mod validate;
pub mod values;
pub mod yaml;

use std::ops::Deref;

pub use diagnostic::{Diagnostic, Severity, Span};
pub use gates::CONDITION_KINDS;
pub use interpolate::{INSTANCE_VARIABLES, ParamReference, SecretReference, Variables};
pub use model::Stack;
pub use overlay::DEFAULT_ENVIRONMENT;

use decode::Decoder;
use interpolate::Interpolator;
use schema::References;
use yaml::Positions;

/// The largest manifest wharf reads: 8 MiB. A stack's manifest is kilobytes; anything this
/// large is a mistake or an attack on a CI that validates untrusted changes.
pub const MAX_MANIFEST_BYTES: usize = 8 << 20;

/// The most diagnostics reported for one manifest; the rest are counted in one last
/// diagnostic ("and N more problems"), so a file of a million mistakes prints a screenful.
pub const MAX_DIAGNOSTICS: usize = 100;

/// A stack that passed validation. Only [`load`] builds one.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidStack(Stack);

impl Deref for ValidStack {
    type Target = Stack;

    fn deref(&self) -> &Stack {
        &self.0
    }
}

impl ValidStack {
    pub fn into_inner(self) -> Stack {
        self.0
    }
}

/// The outcome of loading a manifest: the stack when there were no errors, and every
/// diagnostic (errors and warnings) in file order.
#[derive(Debug)]
pub struct Loaded {
    pub stack: Option<ValidStack>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Which environment to load. `None` means the default (`dev` when defined, else the base).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EnvironmentChoice<'a> {
    #[default]
    Default,
    Named(&'a str),
    /// The base alone, ignoring every overlay.
    Base,
}

/// The manifest's bytes as text, or the one diagnostic that says why they are not a manifest:
/// larger than [`MAX_MANIFEST_BYTES`], or not UTF-8 (at the line and column of the first
/// invalid byte).
pub fn text(bytes: &[u8]) -> Result<&str, Box<Diagnostic>> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(Box::new(too_large(bytes.len())));
    }
    std::str::from_utf8(bytes).map_err(|error| {
        let valid = error.valid_up_to();
        // The prefix before the bad byte is valid UTF-8, so positions are counted in it.
        let prefix = std::str::from_utf8(&bytes[..valid]).unwrap_or_default();
        let line_start = prefix.rfind('\n').map_or(0, |i| i + 1);
        let span = Span {
            start: valid,
            end: valid,
            line: prefix.matches('\n').count() + 1,
            column: prefix[line_start..].chars().count() + 1,
        };
        let message = format!(
            "the manifest is not UTF-8 text: invalid byte 0x{:02x}",
            bytes[valid]
        );
        Box::new(
            Diagnostic::error(span, message)
                .with_label("not UTF-8")
                .with_hint("save the file as UTF-8"),
        )
    })
}

fn too_large(len: usize) -> Diagnostic {
    Diagnostic::error(
        Span {
            line: 1,
            column: 1,
            ..Span::default()
        },
        format!(
            "the manifest is {:.1} MiB; wharf reads manifests of at most {} MiB",
            len as f64 / f64::from(1 << 20),
            MAX_MANIFEST_BYTES >> 20
        ),
    )
    .with_hint("a manifest describes a stack; data belongs in files it names")
}

/// Loads `source` for one environment.
pub fn load(source: &str, environment: EnvironmentChoice<'_>, variables: &dyn Variables) -> Loaded {
    if source.len() > MAX_MANIFEST_BYTES {
        return Loaded {
            stack: None,
            diagnostics: vec![too_large(source.len())],
        };
    }
    let mut decoder = Decoder::default();
    let stack = load_into(&mut decoder, source, environment, variables);
    finish(decoder, stack)
}

/// Validates the base and every environment of `source`, returning each distinct diagnostic
/// once: what `wharf validate` without `--env` reports, so a broken `prod` overlay is caught
/// on a developer's machine.
pub fn check_all(source: &str, variables: &dyn Variables) -> Vec<Diagnostic> {
    if source.len() > MAX_MANIFEST_BYTES {
        return vec![too_large(source.len())];
    }
    let mut decoder = Decoder::default();
    load_into(&mut decoder, source, EnvironmentChoice::Base, variables);
    let environments = environment_names(source);
    let mut diagnostics = decoder.diagnostics;
    for name in environments {
        let mut env_decoder = Decoder::default();
        load_into(
            &mut env_decoder,
            source,
            EnvironmentChoice::Named(&name),
            variables,
        );
        diagnostics.extend(env_decoder.diagnostics);
    }
    sort_and_dedup(&mut diagnostics);
    cap(&mut diagnostics);
    diagnostics
}

/// The names of the environments the manifest defines (empty if it does not parse).
pub fn environment_names(source: &str) -> Vec<String> {
    if source.len() > MAX_MANIFEST_BYTES {
        return Vec::new();
    }
    let (root, _) = yaml::parse(source);
    let Some(mut root) = root else {
        return Vec::new();
    };
    overlay::take_environments(&mut Decoder::default(), &mut root)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect()
}

fn load_into(
    decoder: &mut Decoder,
    source: &str,
    choice: EnvironmentChoice<'_>,
    variables: &dyn Variables,
) -> Option<Stack> {
    let (root, parse_diagnostics) = yaml::parse(source);
    decoder.diagnostics.extend(parse_diagnostics);
    let mut root = root.or_else(|| {
        if decoder.diagnostics.is_empty() {
            let empty = Diagnostic::error(
                Span {
                    line: 1,
                    column: 1,
                    ..Span::default()
                },
                "the manifest is empty",
            )
            .with_hint("run `wharf init` for a starter file");
            decoder.push(empty);
        }
        None
    })?;
    let environments = overlay::take_environments(decoder, &mut root);
    let chosen = match choice {
        EnvironmentChoice::Base => None,
        EnvironmentChoice::Default => environments
            .iter()
            .find(|(n, _, _)| n == DEFAULT_ENVIRONMENT),
        EnvironmentChoice::Named(name) => {
            let found = environments.iter().find(|(n, _, _)| n == name);
            if found.is_none() {
                decoder.push(unknown_environment(name, &environments, &root));
            }
            found
        }
    };
    let environment = chosen.map(|(name, _, node)| {
        overlay::apply(decoder, &mut root, name, node.clone());
        name.clone()
    });
    let positions = Positions::new(source);
    let mut interpolator = Interpolator {
        variables,
        positions: &positions,
        source,
        diagnostics: Vec::new(),
        secrets: Vec::new(),
        params: Vec::new(),
    };
    interpolator.walk(&mut root, &mut Vec::new());
    decoder.diagnostics.append(&mut interpolator.diagnostics);
    let mut refs = References::default();
    let mut stack = schema::stack(decoder, &root, &mut refs)?;
    validate::cross_check(decoder, &stack, &refs, &interpolator.secrets);
    runbooks::cross_check(decoder, &stack, &refs, &interpolator.params);
    stack.environment = environment;
    Some(stack)
}

fn unknown_environment(
    name: &str,
    environments: &[(String, yaml::Node, yaml::Node)],
    root: &yaml::Node,
) -> Diagnostic {
    let names: Vec<&str> = environments.iter().map(|(n, _, _)| n.as_str()).collect();
    let span = environments
        .first()
        .map_or(root.span, |(_, key, _)| key.span);
    let hint = decode::suggestion(name, &names).unwrap_or_else(|| {
        if names.is_empty() {
            "this manifest defines no `environments`".to_owned()
        } else {
            format!("environments defined here: {}", decode::list(&names))
        }
    });
    Diagnostic::error(
        span,
        format!("unknown environment `{name}` (asked for with --env)"),
    )
    .with_hint(hint)
}

fn finish(decoder: Decoder, stack: Option<Stack>) -> Loaded {
    let mut diagnostics = decoder.diagnostics;
    sort_and_dedup(&mut diagnostics);
    cap(&mut diagnostics);
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    Loaded {
        stack: stack.filter(|_| ok).map(ValidStack),
        diagnostics,
    }
}

fn sort_and_dedup(diagnostics: &mut Vec<Diagnostic>) {
    diagnostics.sort_by(|a, b| {
        (a.span.start, a.severity, &a.message).cmp(&(b.span.start, b.severity, &b.message))
    });
    diagnostics.dedup_by(|a, b| a.span == b.span && a.message == b.message);
}

/// Keeps the first [`MAX_DIAGNOSTICS`] (in file order) and counts the rest in one more,
/// placed where the first one left out is, an error if any left out is.
fn cap(diagnostics: &mut Vec<Diagnostic>) {
    if diagnostics.len() <= MAX_DIAGNOSTICS {
        return;
    }
    let rest = diagnostics.split_off(MAX_DIAGNOSTICS);
    let errors = rest.iter().filter(|d| d.is_error()).count();
    let message = format!(
        "and {} more problem(s) not shown ({errors} error(s), {} warning(s))",
        rest.len(),
        rest.len() - errors
    );
    let summary = if errors > 0 {
        Diagnostic::error(rest[0].span, message)
    } else {
        Diagnostic::warning(rest[0].span, message)
    };
    let omitted = diagnostic::Omitted {
        errors,
        warnings: rest.len() - errors,
    };
    diagnostics.push(
        Diagnostic {
            omitted: Some(Box::new(omitted)),
            ..summary
        }
        .with_label("the first problem not shown")
        .with_hint(format!(
            "only the first {MAX_DIAGNOSTICS} are reported; fix those and run again"
        )),
    );
}

/// The effective manifest as YAML: what `wharf render` prints. Secrets stay `${secret:NAME}`.
pub fn render(stack: &ValidStack) -> String {
    let mut value = serde_json::to_value(&stack.0).unwrap_or_default();
    escape_values(&mut value);
    // `environment` is not a manifest key: the applied overlay is named in a comment, so the
    // rendered text is itself a manifest that loads to the same stack.
    let environment = value
        .as_object_mut()
        .and_then(|map| map.shift_remove("environment"));
    let header = match environment {
        Some(serde_json::Value::String(name)) => format!("# environment: {name}\n"),
        _ => String::new(),
    };
    header + &yaml::emit(&value)
}

/// Interpolation already ran, so a `$` left in a value is literal (`$$HOME` became `$HOME`)
/// unless it starts a reference that stays symbolic; it is written back as `$$` so the
/// rendered manifest loads to the same stack. Keys are never interpolated and stay as they are.
fn escape_values(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(text) if text.contains('$') => {
            *text = interpolate::escape_literal(text)
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(escape_values),
        serde_json::Value::Object(map) => map.values_mut().for_each(escape_values),
        _ => {}
    }
}
