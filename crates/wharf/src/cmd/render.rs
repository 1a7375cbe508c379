//! `wharf render`: the effective manifest after overlays and interpolation, or with
//! `--target kubernetes` the Kubernetes objects that run it.
//!
//! Secrets stay symbolic (`${secret:NAME}`): their values are resolved only inside the
//! control plane when an instance starts, so rendered output is safe to paste anywhere. The
//! Kubernetes rendering names secrets as keys of one Secret and never holds a value either.

use crate::cli::{Global, Output};
use crate::exit::ExitStatus;
use crate::manifest_file::ManifestFile;

#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The environment overlay to apply (default: `dev` when the manifest defines it).
    #[arg(long = "env", value_name = "ENV")]
    pub environment: Option<String>,
    /// What to render: the effective manifest (`wharf`), or the Kubernetes objects that run it
    /// (`kubernetes`: a YAML stream for `kubectl apply -f -` or a GitOps repository).
    #[arg(long, value_enum, default_value_t = RenderTarget::Wharf)]
    pub target: RenderTarget,
    /// The namespace written into every Kubernetes object (default: none, so they go where
    /// they are applied).
    #[arg(long, value_name = "NAMESPACE", value_parser = kubernetes_name)]
    pub namespace: Option<String>,
    /// The Gateway API Gateway (`NAME` or `NAMESPACE/NAME`) that the services' HTTPRoutes
    /// attach to; without it each service is a plain Service and no traffic split is rendered.
    #[arg(long, value_name = "[NAMESPACE/]NAME", value_parser = gateway)]
    pub gateway: Option<wharf_kube::GatewayRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderTarget {
    Wharf,
    Kubernetes,
}

/// A DNS-1123 label, as Kubernetes requires of namespaces and Gateway names.
pub(crate) fn kubernetes_name(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a Kubernetes name (lowercase letters, digits and `-`, at most 63, starting and ending with a letter or digit)"
        ))
    }
}

pub(crate) fn gateway(text: &str) -> Result<wharf_kube::GatewayRef, String> {
    match text.split_once('/') {
        Some((namespace, name)) => Ok(wharf_kube::GatewayRef {
            name: kubernetes_name(name)?,
            namespace: Some(kubernetes_name(namespace)?),
        }),
        None => Ok(wharf_kube::GatewayRef {
            name: kubernetes_name(text)?,
            namespace: None,
        }),
    }
}

pub fn run(global: &Global, args: &RenderArgs) -> anyhow::Result<ExitStatus> {
    if args.target == RenderTarget::Wharf && (args.namespace.is_some() || args.gateway.is_some()) {
        eprintln!("error: `--namespace` and `--gateway` need `--target kubernetes`");
        return Ok(ExitStatus::Invalid);
    }
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
    if args.target == RenderTarget::Kubernetes {
        return kubernetes(global, args, &manifest, &stack);
    }
    match global.output {
        Output::Human => print!("{}", wharf_manifest::render(&stack)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&*stack)?),
    }
    Ok(ExitStatus::Ok)
}

fn kubernetes(
    global: &Global,
    args: &RenderArgs,
    manifest: &ManifestFile,
    stack: &wharf_manifest::Stack,
) -> anyhow::Result<ExitStatus> {
    let target = wharf_kube::Target {
        namespace: args.namespace.clone(),
        gateway: args.gateway.clone(),
    };
    let rendered = match wharf_kube::render(stack, &target) {
        Ok(rendered) => rendered,
        Err(errors) => {
            for error in &errors {
                eprintln!("error: {error}");
            }
            eprintln!(
                "{}: not rendered for Kubernetes ({} problem{})",
                manifest.display,
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            return Ok(ExitStatus::Invalid);
        }
    };
    for note in &rendered.notes {
        eprintln!("note: {note}");
    }
    match global.output {
        Output::Human => print!("{}", rendered.to_yaml()),
        Output::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": rendered.objects.iter().map(|o| &o.value).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&list)?);
        }
    }
    Ok(ExitStatus::Ok)
}
