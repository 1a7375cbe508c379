//! `wharf render`: the effective manifest after overlays and interpolation.
//!
//! Secrets stay symbolic (`${secret:NAME}`): their values are resolved only inside the
//! control plane when an instance starts, so rendered output is safe to paste anywhere.

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The environment overlay to apply (default: `dev` when the manifest defines it).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
}

pub fn run(global: &Global, args: &RenderArgs) -> anyhow::Result<ExitStatus> {
    let manifest = ManifestFile::read(global)?;
    let loaded = manifest.load(args.environment.as_deref());
    let Some(stack) = loaded.stack else {
        manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
        eprintln!(
            "{}: not rendered, the manifest has errors",
            manifest.display
        );
        return Ok(ExitStatus::Invalid);
    };
    // Warnings go to stderr so stdout stays a clean manifest.
    manifest.print_diagnostics(&loaded.diagnostics, Output::Human)?;
    match global.output {
        Output::Human => print!("{}", wharf_manifest::render(&stack)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&*stack)?),
    }
    Ok(ExitStatus::Ok)
}
