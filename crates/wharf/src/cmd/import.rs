//! `wharf import …`: convert another tool's file into a wharf.yaml.
//!
//! The converted manifest goes to stdout so `wharf import compose docker-compose.yml >
//! wharf.yaml` works; everything that could not be carried over goes to stderr with the
//! compose file's line and column, followed by the `wharf secret set` commands for the values
//! that looked like credentials (never the values: they stay where compose had them). The
//! conversion itself is pure (`wharf-compose`); this module is its IO edge: it reads the
//! compose file and its `env_file`s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wharf_compose::{ImportError, Imported, SecretToSet, WarningKind};
use wharf_manifest::Diagnostic;
use wharf_manifest::diagnostic::render;

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::use_color;

#[derive(Debug, clap::Subcommand)]
pub enum ImportCommand {
    /// Convert a docker-compose.yml; the wharf.yaml goes to stdout, warnings to stderr.
    Compose {
        /// The compose file to read.
        path: PathBuf,
    },
}

pub fn run(global: &Global, command: ImportCommand) -> anyhow::Result<ExitStatus> {
    match command {
        ImportCommand::Compose { path } => compose(&path, global.output),
    }
}

/// The compose file as read from disk, with the name messages use for it.
struct ComposeFile {
    display: String,
    text: String,
}

impl ComposeFile {
    fn print(&self, diagnostics: &[Diagnostic]) {
        if !diagnostics.is_empty() {
            eprint!(
                "{}",
                render(diagnostics, &self.display, &self.text, use_color())
            );
        }
    }
}

fn compose(path: &Path, output: Output) -> anyhow::Result<ExitStatus> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read compose file {display}"))?;
    let file = ComposeFile { display, text };
    // `env_file` paths are relative to the compose file, as compose resolves them.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let read_env_file = |name: &str| std::fs::read_to_string(dir.join(name));
    // The project name falls back to the compose file's directory, so give the converter an
    // absolute path even for `wharf import compose docker-compose.yml`.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    // Bind mounts are relative to the compose file; when stdout is a file elsewhere (`wharf
    // import compose app/docker-compose.yml > wharf.yaml`), they are rewritten relative to it.
    let converted = match written_to() {
        Some(manifest_dir) => {
            wharf_compose::convert_for(&file.text, &absolute, &manifest_dir, &read_env_file)
        }
        None => wharf_compose::convert(&file.text, &absolute, &read_env_file),
    };
    if output == Output::Json {
        return as_json(&file, &converted);
    }
    match converted {
        Ok(imported) => Ok(imported_ok(&file, &imported, dir)),
        Err(err) => Ok(not_imported(&file, &err)),
    }
}

/// The directory of the regular file stdout is redirected to, if it is one (else the
/// wharf.yaml is taken to be written beside the compose file).
fn written_to() -> Option<PathBuf> {
    let target = std::fs::read_link("/proc/self/fd/1").ok()?;
    if !std::fs::metadata(&target).ok()?.is_file() {
        return None;
    }
    target.parent().map(Path::to_path_buf)
}

/// `--output json`: one object on stdout, `{"imported", "manifest", "warnings"}` (or
/// `{"imported": false, "error", "diagnostics"}`), diagnostics in `wharf validate`'s shape.
fn as_json(
    file: &ComposeFile,
    converted: &Result<Imported, ImportError>,
) -> anyhow::Result<ExitStatus> {
    let records = |diagnostics: &[Diagnostic]| -> serde_json::Value {
        let records: Vec<_> = diagnostics
            .iter()
            .map(|d| d.record(&file.display))
            .collect();
        serde_json::to_value(records).unwrap_or_default()
    };
    let (value, status) = match converted {
        Ok(imported) => {
            let warnings: Vec<Diagnostic> = imported
                .warnings
                .iter()
                .map(|w| w.diagnostic.clone())
                .collect();
            let value = serde_json::json!({
                "imported": true,
                "manifest": imported.yaml,
                "warnings": records(&warnings),
                "secrets": secrets_json(&file.display, &imported.secrets),
            });
            (value, ExitStatus::Ok)
        }
        Err(err) => {
            let value = serde_json::json!({
                "imported": false,
                "error": err.to_string(),
                "diagnostics": records(&err.diagnostics()),
            });
            (value, ExitStatus::Invalid)
        }
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(status)
}

fn imported_ok(file: &ComposeFile, imported: &Imported, dir: &Path) -> ExitStatus {
    let warnings: Vec<Diagnostic> = imported
        .warnings
        .iter()
        .map(|w| w.diagnostic.clone())
        .collect();
    file.print(&warnings);
    check_output(imported, dir);
    print!("{}", imported.yaml);
    let changed = imported
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::Changed)
        .count();
    let not_carried = warnings.len() - changed;
    print_secrets(&imported.secrets);
    if warnings.is_empty() {
        eprintln!("{}: imported with nothing left behind", file.display);
    } else {
        eprintln!(
            "{}: imported; see above: {not_carried} thing(s) not carried over, {changed} that mean something else in wharf",
            file.display
        );
    }
    ExitStatus::Ok
}

/// The secrets to store, one `wharf secret set` line each with where its value was. The
/// command reads stdin (prompting on a terminal), so the value is typed or piped in, never
/// put on a command line.
fn print_secrets(secrets: &[SecretToSet]) {
    if secrets.is_empty() {
        return;
    }
    eprintln!(
        "{} value(s) looked like credentials: wharf.yaml refers to them as `${{secret:NAME}}` and declares them under `secrets:`, without their values.",
        secrets.len()
    );
    eprintln!(
        "Store each before `wharf up` (beside the new wharf.yaml); each command asks for the value on stdin (paste it, then Ctrl-D):"
    );
    let width = secrets.iter().map(|s| s.command().len()).max().unwrap_or(0);
    for secret in secrets {
        eprintln!("  {:width$}  # {}", secret.command(), secret.origin());
    }
}

/// `--output json`'s `secrets`: names, commands and where each value was (never a value).
fn secrets_json(file: &str, secrets: &[SecretToSet]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = secrets
        .iter()
        .map(|secret| {
            let sources: Vec<serde_json::Value> = secret
                .sources
                .iter()
                .map(|source| {
                    serde_json::json!({
                        "key": source.key,
                        "variable": source.variable,
                        "env_file": source.env_file,
                        "from": source.describe(),
                        "file": file,
                        "line": source.span.line,
                        "column": source.span.column,
                    })
                })
                .collect();
            serde_json::json!({
                "name": secret.name,
                "command": secret.command(),
                "sources": sources,
            })
        })
        .collect();
    serde_json::Value::Array(items)
}

/// Loads the generated manifest as `wharf validate` would beside the compose file (process
/// environment, then its `.env`) and reports anything it rejects (say, a `${VAR:?}` that is
/// unset), so a user learns it now, not at `wharf up`.
fn check_output(imported: &Imported, dir: &Path) {
    let dotenv: HashMap<String, String> = dotenvy::from_path_iter(dir.join(".env"))
        .map(|entries| entries.filter_map(Result::ok).collect())
        .unwrap_or_default();
    let variables = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    };
    let loaded = wharf_manifest::load(
        &imported.yaml,
        wharf_manifest::EnvironmentChoice::Default,
        &variables,
    );
    let errors: Vec<Diagnostic> = loaded
        .diagnostics
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    if !errors.is_empty() {
        eprint!(
            "{}",
            render(
                &errors,
                "wharf.yaml (imported)",
                &imported.yaml,
                use_color()
            )
        );
        eprintln!(
            "the imported wharf.yaml needs the fixes above before `wharf validate` accepts it"
        );
    }
}

fn not_imported(file: &ComposeFile, err: &ImportError) -> ExitStatus {
    file.print(&err.diagnostics());
    eprintln!("{}: not imported: {err}", file.display);
    ExitStatus::Invalid
}
