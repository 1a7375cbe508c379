//! `wharf validate`: check the manifest and report every problem with file:line:column.

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Check one environment's effective manifest; by default the base and every environment
    /// are checked.
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
}

pub fn run(global: &Global, args: &ValidateArgs) -> anyhow::Result<ExitStatus> {
    let manifest = ManifestFile::read(global)?;
    let diagnostics = manifest.check(args.environment.as_deref());
    manifest.print_diagnostics(&diagnostics, global.output)?;
    let (errors, warnings) = wharf_manifest::diagnostic::count(&diagnostics);
    if global.output == Output::Human {
        if errors > 0 {
            eprintln!(
                "{}: {errors} error(s), {warnings} warning(s)",
                manifest.display
            );
        } else {
            let checked = match &args.environment {
                Some(name) => format!("environment {name}"),
                None => describe_environments(&manifest.environment_names()),
            };
            println!(
                "{}: valid ({checked}; {warnings} warning(s))",
                manifest.display
            );
        }
    }
    Ok(if errors > 0 {
        ExitStatus::Invalid
    } else {
        ExitStatus::Ok
    })
}

fn describe_environments(names: &[String]) -> String {
    if names.is_empty() {
        "base manifest".to_owned()
    } else {
        format!("base and environments {}", names.join(", "))
    }
}
