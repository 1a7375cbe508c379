//! Reading the manifest from disk: the file, the variables it may interpolate, and printing
//! its diagnostics. The manifest crate is pure; this is its IO edge.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use wharf_manifest::Diagnostic;

use crate::cli::{Global, Output};

/// A manifest's text and the variables available to `${VAR}` in it.
pub struct ManifestFile {
    pub path: PathBuf,
    pub display: String,
    pub source: String,
    variables: HashMap<String, String>,
}

impl ManifestFile {
    /// Reads `-f FILE` and the `.env` file beside it (compose's convention: the process
    /// environment wins over `.env`).
    pub fn read(global: &Global) -> anyhow::Result<Self> {
        Self::read_path(&global.file)
    }

    /// Reads a manifest file and the `.env` beside it.
    pub fn read_path(path: &std::path::Path) -> anyhow::Result<Self> {
        let path = path.to_owned();
        let display = path.display().to_string();
        let source = std::fs::read_to_string(&path).with_context(|| {
            let hint = if path.exists() {
                ""
            } else {
                " (run `wharf init` to create one, or pass -f FILE)"
            };
            format!("cannot read manifest {display}{hint}")
        })?;
        let variables = dotenv_beside(&path)?;
        Ok(ManifestFile {
            path,
            display,
            source,
            variables,
        })
    }

    /// Looks a variable up: process environment first, then `.env`.
    pub fn variable(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.variables.get(name).cloned())
    }

    /// Loads the manifest for `environment` (`None`: the default, `dev` when defined).
    pub fn load(&self, environment: Option<&str>) -> wharf_manifest::Loaded {
        let choice = environment.map_or(
            wharf_manifest::EnvironmentChoice::Default,
            wharf_manifest::EnvironmentChoice::Named,
        );
        wharf_manifest::load(&self.source, choice, &|name: &str| self.variable(name))
    }

    /// Prints diagnostics on stderr (human) or stdout (JSON array).
    pub fn print_diagnostics(
        &self,
        diagnostics: &[Diagnostic],
        output: Output,
    ) -> anyhow::Result<()> {
        match output {
            Output::Json => {
                let records: Vec<_> = diagnostics
                    .iter()
                    .map(|d| d.record(&self.display))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&records)?);
            }
            Output::Human if !diagnostics.is_empty() => {
                let text = wharf_manifest::diagnostic::render(
                    diagnostics,
                    &self.display,
                    &self.source,
                    use_color(),
                );
                eprint!("{text}");
            }
            Output::Human => {}
        }
        Ok(())
    }
}

fn dotenv_beside(manifest: &Path) -> anyhow::Result<HashMap<String, String>> {
    let dir = manifest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join(".env");
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let entries = dotenvy::from_path_iter(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    entries
        .map(|entry| {
            // dotenvy's parse error quotes the offending line, which may hold a secret: say
            // where, never what.
            entry.map_err(|err| match err {
                dotenvy::Error::LineParse(_, index) => {
                    anyhow::anyhow!(
                        "{}: cannot parse the line at character {index}",
                        path.display()
                    )
                }
                dotenvy::Error::Io(io) => anyhow::anyhow!("cannot read {}: {io}", path.display()),
                _ => anyhow::anyhow!("cannot parse {}", path.display()),
            })
        })
        .collect()
}

/// Colour only for a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn use_color() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
