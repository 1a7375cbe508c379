//! `wharf import compose`: converts a docker-compose.yml into a wharf.yaml.
//!
//! Most teams already describe their stack in a compose file; this crate lets them start from
//! it. It is pure: the caller hands over the compose text, its path (for the project name and
//! messages) and a closure that reads `env_file`s, so every conversion is a fast, repeatable
//! function of its inputs. Whatever compose says that wharf cannot express comes back as a
//! [`Warning`] naming the key and its line:column — nothing is dropped silently.

mod build;
mod datastore;
mod env;
mod health;
mod keys;
mod options;
mod ports;
mod secrets;
mod service;
mod variables;
mod volumes;

use std::io;
use std::path::Path;

use serde_json::{Map, Value};
use wharf_manifest::yaml::{self, Node, NodeKind};
use wharf_manifest::{Diagnostic, Span};

pub use secrets::{SecretSource, SecretToSet, ValueOrigin};

/// The result of a conversion: the wharf.yaml text, what could not be carried over, and the
/// secrets the operator must store before `wharf up`.
#[derive(Debug, Clone)]
pub struct Imported {
    pub yaml: String,
    pub warnings: Vec<Warning>,
    /// Values that looked like credentials: the wharf.yaml refers to them as
    /// `${secret:NAME}` and declares them under `secrets:`; their values are nowhere in the
    /// output, only where each came from.
    pub secrets: Vec<SecretToSet>,
}

/// Something in the compose file wharf did not carry over (or carried with a different meaning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    /// The compose key concerned, as a dotted path: `services.db.volumes`, `networks`.
    pub key: String,
    /// The message, with the span of the key in the compose file.
    pub diagnostic: Diagnostic,
}

/// The two things a user must know after an import, kept apart so each list can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarningKind {
    /// The key (or part of its value) is not in the wharf.yaml.
    NotCarried,
    /// The key is in the wharf.yaml but means something different there (or is a risk there,
    /// like a password now in clear text).
    Changed,
}

/// Why a compose file could not be converted at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The text is not valid YAML.
    #[error("the compose file is not valid YAML")]
    Yaml { diagnostics: Vec<Diagnostic> },
    /// Valid YAML, but not a compose file (no `services` mapping).
    #[error("not a compose file: {}", diagnostic.message)]
    NotCompose { diagnostic: Diagnostic },
    /// A compose file with values compose itself would reject.
    #[error("the compose file has {} problem(s)", diagnostics.len())]
    Invalid { diagnostics: Vec<Diagnostic> },
    /// A required `env_file` could not be read.
    #[error("env_file `{path}` could not be read: {source}")]
    EnvFile {
        path: String,
        span: Span,
        #[source]
        source: io::Error,
    },
}

impl ImportError {
    /// Every problem as a diagnostic with a position, ready for
    /// [`wharf_manifest::diagnostic::render`].
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            ImportError::Yaml { diagnostics } | ImportError::Invalid { diagnostics } => {
                diagnostics.clone()
            }
            ImportError::NotCompose { diagnostic } => vec![diagnostic.clone()],
            ImportError::EnvFile { path, span, source } => {
                let message = format!("env_file `{path}` could not be read: {source}");
                let hint =
                    "create the file, or mark it optional with `{path: ..., required: false}`";
                vec![Diagnostic::error(*span, message).with_hint(hint)]
            }
        }
    }
}

/// Reads an `env_file` given as written in the compose file (relative to the compose file's
/// directory); the caller decides what "relative" means, keeping this crate free of IO.
pub type ReadEnvFile<'a> = &'a dyn Fn(&str) -> io::Result<String>;

/// Converts compose `text` read from `path` into a wharf.yaml.
///
/// `path` names the project when the file has no `name:` (its directory, as compose does) and
/// the header comment. Warnings come back sorted by position in the compose file. It fails on
/// text that is not YAML or not a compose file, on values compose itself would reject (all of
/// them at once), and on a required `env_file` that `read_env_file` cannot read.
pub fn convert(
    text: &str,
    path: &Path,
    read_env_file: ReadEnvFile<'_>,
) -> Result<Imported, ImportError> {
    convert_into(text, path, None, read_env_file)
}

/// [`convert`] for a wharf.yaml written in `manifest_dir` (absolute) rather than beside the
/// compose file: bind mounts relative to the compose file are rewritten relative to it.
pub fn convert_for(
    text: &str,
    path: &Path,
    manifest_dir: &Path,
    read_env_file: ReadEnvFile<'_>,
) -> Result<Imported, ImportError> {
    convert_into(text, path, Some(manifest_dir), read_env_file)
}

fn convert_into(
    text: &str,
    path: &Path,
    manifest_dir: Option<&Path>,
    read_env_file: ReadEnvFile<'_>,
) -> Result<Imported, ImportError> {
    let root = parse_root(text)?;
    let services = services_node(&root)?;
    let mut importer = Importer {
        warnings: Vec::new(),
        errors: Vec::new(),
        read_env_file,
        secrets: secrets::Registry::default(),
        scope: None,
        networks: options::Networks::new(),
        bind_base: manifest_dir.and_then(|dir| volumes::bind_base(dir, path)),
    };
    let project = importer.project_name(&root, path);
    importer.top_level_keys(&root);
    if let Some(volumes) = root.get("volumes") {
        volumes::top_level(&mut importer, &project, volumes);
    }
    let networks = match root.get("networks") {
        Some(node) => {
            let (networks, declared) = options::top_level(&mut importer, node);
            importer.networks = networks;
            declared
        }
        None => Map::new(),
    };
    let names = service::ServiceNames::collect(services);
    let mut out_services = Map::new();
    for (key, node) in map_entries(services) {
        let Some(name) = key.as_str() else { continue };
        let converted = service::convert(&mut importer, &project, &names, name, key, node)?;
        if let Some(value) = converted {
            out_services.insert(names.wharf_name(name), value);
        }
    }
    if !importer.errors.is_empty() {
        return Err(ImportError::Invalid {
            diagnostics: importer.errors,
        });
    }
    importer.warn_secrets_outside_env(services, &names, &out_services);
    let secrets = importer.secrets.finish();
    let mut manifest = Map::new();
    manifest.insert("name".to_owned(), Value::String(project));
    if !secrets.is_empty() {
        manifest.insert("secrets".to_owned(), secrets::declarations(&secrets));
    }
    manifest.insert("services".to_owned(), Value::Object(out_services));
    if !networks.is_empty() {
        manifest.insert("networks".to_owned(), Value::Object(networks));
    }
    importer.warnings.sort_by_key(|w| w.diagnostic.span.start);
    Ok(Imported {
        yaml: header(path, &secrets) + &yaml::emit(&Value::Object(manifest)),
        warnings: importer.warnings,
        secrets,
    })
}

/// The comment on top of the output: where it came from, and the secrets to store first.
fn header(path: &Path, secrets: &[SecretToSet]) -> String {
    let file = path.file_name().map_or_else(
        || path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let mut header = format!("# imported from {file} by wharf import compose\n");
    if !secrets.is_empty() {
        header.push_str(
            "# store these secrets before `wharf up`; each command reads the value from stdin:\n",
        );
        for secret in secrets {
            header.push_str(&format!("#   {}\n", secret.command()));
        }
    }
    header
}

fn parse_root(text: &str) -> Result<Node, ImportError> {
    let (root, diagnostics) = yaml::parse(text);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(ImportError::Yaml { diagnostics });
    }
    let start = Span {
        line: 1,
        column: 1,
        ..Span::default()
    };
    let root = root.ok_or_else(|| not_compose(start, "the file is empty"))?;
    if !matches!(root.kind, NodeKind::Map(_)) {
        let found = root.type_name();
        return Err(not_compose(
            root.span,
            &format!("expected a mapping with `services:`, found {found}"),
        ));
    }
    Ok(root)
}

fn services_node(root: &Node) -> Result<&Node, ImportError> {
    let services = root.get("services").ok_or_else(|| {
        let start = Span {
            line: 1,
            column: 1,
            ..Span::default()
        };
        not_compose(root.span.to(start), "there is no top-level `services` key")
    })?;
    match &services.kind {
        NodeKind::Map(entries) if !entries.is_empty() => Ok(services),
        NodeKind::Map(_) | NodeKind::Null => Err(not_compose(services.span, "`services` is empty")),
        _ => {
            let found = services.type_name();
            Err(not_compose(
                services.span,
                &format!("`services` must be a mapping, found {found}"),
            ))
        }
    }
}

fn not_compose(span: Span, message: &str) -> ImportError {
    let diagnostic = Diagnostic::error(span, format!("not a compose file: {message}"))
        .with_hint("a compose file is a mapping with `services:`, each service a mapping with `image:` or `build:`");
    ImportError::NotCompose { diagnostic }
}

/// The entries of a mapping node (empty for anything else).
pub(crate) fn map_entries(node: &Node) -> &[(Node, Node)] {
    match &node.kind {
        NodeKind::Map(entries) => entries,
        _ => &[],
    }
}

/// Conversion state shared by the per-service functions: warnings, errors, the env file reader,
/// the secrets moved out of the file, and the service being converted.
pub(crate) struct Importer<'a> {
    pub warnings: Vec<Warning>,
    pub errors: Vec<Diagnostic>,
    pub read_env_file: ReadEnvFile<'a>,
    pub secrets: secrets::Registry,
    /// The service whose keys are being converted, so a warning about a key it took from a
    /// template (`<<: *defaults`, an alias) lands on the service's own lines.
    pub scope: Option<Scope>,
    /// The top-level networks and what each became, for the services that name them.
    pub networks: options::Networks,
    /// The compose file's directory as seen from the wharf.yaml's (`sub`, `../app`), when they
    /// differ: relative bind mounts are rewritten through it.
    pub bind_base: Option<String>,
}

/// Where a service is in the compose file, for [`Importer::push`]'s relocation.
#[derive(Clone)]
pub(crate) struct Scope {
    /// `services.NAME.`: the prefix of the warning keys that belong to the service.
    prefix: String,
    /// The whole service mapping; a span inside it needs no relocation.
    span: Span,
    /// The service's name key.
    name: Span,
    /// Each top-level key of the service: its own span, and the `<<` that merged it, if any.
    keys: Vec<(String, Span, Option<Span>)>,
}

impl Scope {
    pub(crate) fn new(name: &str, key: &Node, node: &Node) -> Self {
        let keys = map_entries(node)
            .iter()
            .filter_map(|(k, _)| Some((k.as_str()?.to_owned(), k.span, k.merged_at)))
            .collect();
        Scope {
            prefix: format!("services.{name}."),
            span: node.span,
            name: key.span,
            keys,
        }
    }

    fn contains(&self, span: Span) -> bool {
        self.span.start <= span.start && span.end <= self.span.end
    }

    /// The service's own place for a warning about `key` whose span is in a template: the
    /// top-level key if the service writes it itself, else the `<<` line that merged it, else
    /// the service's name.
    fn own_span(&self, key: &str) -> Span {
        let top = key
            .strip_prefix(&self.prefix)
            .map(|rest| rest.split('.').next().unwrap_or(rest));
        let entry = top.and_then(|top| self.keys.iter().find(|(k, _, _)| k == top));
        match entry {
            Some((_, span, _)) if self.contains(*span) => *span,
            Some((_, _, Some(merged))) if self.contains(*merged) => *merged,
            _ => self.name,
        }
    }
}

impl Importer<'_> {
    /// Records that `key` (a dotted path) at `span` was not carried over.
    pub fn warn(
        &mut self,
        key: impl Into<String>,
        span: Span,
        message: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.push(
            WarningKind::NotCarried,
            key.into(),
            Diagnostic::warning(span, message),
            hint,
        );
    }

    /// Records that `key` at `span` was carried over but means something else in wharf.
    pub fn changed(
        &mut self,
        key: impl Into<String>,
        span: Span,
        message: impl Into<String>,
        hint: Option<&str>,
    ) {
        self.push(
            WarningKind::Changed,
            key.into(),
            Diagnostic::warning(span, message),
            hint,
        );
    }

    /// Records a warning; one about a service's key whose span lies in a template it merged
    /// or aliased is moved to the service's own line (each service that uses the template
    /// gets its own warning there), with the template's line in its label.
    fn push(
        &mut self,
        kind: WarningKind,
        key: String,
        mut diagnostic: Diagnostic,
        hint: Option<&str>,
    ) {
        if let Some(scope) = &self.scope
            && key.starts_with(&scope.prefix)
            && !scope.contains(diagnostic.span)
        {
            let template = diagnostic.span.line;
            diagnostic.span = scope.own_span(&key);
            diagnostic = diagnostic.with_label(format!("set by the template on line {template}"));
        }
        if let Some(hint) = hint {
            diagnostic = diagnostic.with_hint(hint);
        }
        self.warnings.push(Warning {
            kind,
            key,
            diagnostic,
        });
    }

    /// Warns where a credential the import moved into a secret is also written, in clear, in
    /// a service's command or probes: wharf refuses `${secret:…}` there (argv is
    /// visible to every user), so it stays as compose wrote it and the user must move it into
    /// the environment. The warning points at the service's name, whose line holds no value.
    fn warn_secrets_outside_env(
        &mut self,
        services: &Node,
        names: &service::ServiceNames,
        out: &Map<String, Value>,
    ) {
        for (key, _) in map_entries(services) {
            let Some(name) = key.as_str() else { continue };
            let Some(Value::Object(service)) = out.get(&names.wharf_name(name)) else {
                continue;
            };
            // Where `${secret:…}` cannot go: argv (seen by `ps`), probes, and build args
            // (kept in the image's history).
            for field in ["command", "entrypoint", "probes", "build"] {
                let Some(value) = service.get(field) else {
                    continue;
                };
                let text = value.to_string();
                for secret in self.secrets.found_in(&text) {
                    let message = format!(
                        "`services.{name}.{field}` holds the value of secret `{secret}` in clear text: wharf.yaml cannot refer to a secret there"
                    );
                    let hint = format!(
                        "remove it from wharf.yaml's `{field}` and pass it through the environment: `env: {{NAME: ${{secret:{secret}}}}}`, read by the process"
                    );
                    self.changed(
                        format!("services.{name}.{field}"),
                        key.span,
                        message,
                        Some(&hint),
                    );
                }
            }
        }
    }

    /// Records a value compose itself would reject.
    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.errors.push(Diagnostic::error(span, message));
    }

    /// compose's `name:`, else the compose file's directory name, sanitized the way compose
    /// does (lowercase letters, digits, `-` and `_`).
    fn project_name(&mut self, root: &Node, path: &Path) -> String {
        let from_file = root.get("name").and_then(Node::as_str).map(str::to_owned);
        let from_dir = || {
            path.parent()
                .and_then(Path::file_name)
                .map(|name| name.to_string_lossy().into_owned())
        };
        let raw = from_file.or_else(from_dir).unwrap_or_default();
        let name = keys::project_name(&raw);
        if name.is_empty() {
            "app".to_owned()
        } else {
            name
        }
    }

    /// Warns about every top-level key other than `services`, `name`, `x-*` extensions and
    /// the obsolete `version` (compose v2 ignores it, and so does the import).
    fn top_level_keys(&mut self, root: &Node) {
        for (key, _) in map_entries(root) {
            let Some(name) = key.as_str() else { continue };
            // `volumes` declarations are read by `volumes::top_level`, `networks` by
            // `options::top_level`.
            if matches!(
                name,
                "services" | "name" | "version" | "volumes" | "networks"
            ) || name.starts_with("x-")
            {
                continue;
            }
            let (message, hint) = keys::top_level(name);
            self.warn(name, key.span, message, hint);
        }
    }
}
