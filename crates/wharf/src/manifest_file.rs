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
    /// The text (for a file that is not UTF-8, decoded lossily so its line can be shown).
    pub source: String,
    /// Why the bytes are not a manifest at all (too large, not UTF-8): then every load or
    /// check reports this one diagnostic, with its line and column.
    unreadable: Option<Diagnostic>,
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
        let bytes = read_bounded(&path).with_context(|| {
            let hint = if path.exists() {
                ""
            } else {
                " (run `wharf init` to create one, or pass -f FILE)"
            };
            format!("cannot read manifest {display}{hint}")
        })?;
        let (source, unreadable) = match wharf_manifest::text(&bytes) {
            Ok(text) => (text.to_owned(), None),
            Err(diagnostic) => {
                let shown = &bytes[..bytes.len().min(wharf_manifest::MAX_MANIFEST_BYTES)];
                (
                    String::from_utf8_lossy(shown).into_owned(),
                    Some(*diagnostic),
                )
            }
        };
        let variables = dotenv_beside(&path)?;
        Ok(ManifestFile {
            path,
            display,
            source,
            unreadable,
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
        if let Some(diagnostic) = &self.unreadable {
            return wharf_manifest::Loaded {
                stack: None,
                diagnostics: vec![diagnostic.clone()],
            };
        }
        let choice = environment.map_or(
            wharf_manifest::EnvironmentChoice::Default,
            wharf_manifest::EnvironmentChoice::Named,
        );
        wharf_manifest::load(&self.source, choice, &|name: &str| self.variable(name))
    }

    /// What `wharf validate` reports: one environment's diagnostics, or (`None`) the base's
    /// and every environment's.
    pub fn check(&self, environment: Option<&str>) -> Vec<Diagnostic> {
        match (&self.unreadable, environment) {
            (Some(diagnostic), _) => vec![diagnostic.clone()],
            (None, Some(_)) => self.load(environment).diagnostics,
            (None, None) => {
                wharf_manifest::check_all(&self.source, &|name: &str| self.variable(name))
            }
        }
    }

    /// The environments the manifest defines (none when it cannot be read).
    pub fn environment_names(&self) -> Vec<String> {
        if self.unreadable.is_some() {
            return Vec::new();
        }
        wharf_manifest::environment_names(&self.source)
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

/// Reads at most one byte past [`wharf_manifest::MAX_MANIFEST_BYTES`]: enough to tell the
/// file is too large without holding all of a huge one in memory.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(wharf_manifest::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
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
