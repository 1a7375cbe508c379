//! `wharf init`: write a commented starter wharf.yaml that validates as written.

use std::io::Write;

use anyhow::Context;

use crate::cli::Global;
use crate::exit::ExitStatus;

/// The starter manifest. A test checks that it validates with no diagnostics.
pub const STARTER: &str = include_str!("starter.yaml");

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
    /// The stack name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(global: &Global, args: &InitArgs) -> anyhow::Result<ExitStatus> {
    let path = &global.file;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(path)?,
    };
    let text = STARTER.replacen("name: my-stack", &format!("name: {name}"), 1);
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if args.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = match options.open(path) {
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "error: {} already exists; pass --force to overwrite it",
                path.display()
            );
            return Ok(ExitStatus::Invalid);
        }
        other => other.with_context(|| format!("cannot create {}", path.display()))?,
    };
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!(
        "wrote {}; next: `wharf validate -f {}`",
        path.display(),
        path.display()
    );
    Ok(ExitStatus::Ok)
}

/// The directory's name, reduced to the characters a stack name may use.
fn default_name(path: &std::path::Path) -> anyhow::Result<String> {
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => parent.to_path_buf(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
    let raw = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("my-stack");
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-');
    Ok(if name.is_empty() {
        "my-stack".to_owned()
    } else {
        name.to_owned()
    })
}
