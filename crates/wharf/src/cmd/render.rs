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
    #[command(flatten)]
    pub router: RouterArgs,
}

/// `--router wharf --router-image IMAGE`, shared by `render` and `cluster apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct RouterArgs {
    /// What splits each service's traffic instead of a Gateway: `wharf`, wharf's own proxy as
    /// a router Deployment in front of the versions (no mesh or Gateway API implementation
    /// needed). Needs `--router-image`; not with `--gateway`.
    #[arg(long, value_enum, value_name = "ROUTER")]
    pub router: Option<RouterKind>,
    /// The image that runs `wharf-proxy` for `--router wharf`.
    #[arg(long, value_name = "IMAGE")]
    pub router_image: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouterKind {
    Wharf,
}

impl RouterArgs {
    /// The router to render, or why the flags do not go together (each a usage error).
    pub(crate) fn spec(
        &self,
        gateway: Option<&wharf_kube::GatewayRef>,
    ) -> Result<Option<wharf_kube::RouterSpec>, String> {
        match (self.router, &self.router_image) {
            (Some(_), _) if gateway.is_some() => Err(
                "`--router wharf` and `--gateway` both split the traffic: give one of them"
                    .to_owned(),
            ),
            (Some(RouterKind::Wharf), Some(image)) if !image.trim().is_empty() => {
                Ok(Some(wharf_kube::RouterSpec {
                    image: image.trim().to_owned(),
                }))
            }
            (Some(RouterKind::Wharf), _) => Err(
                "`--router wharf` needs `--router-image IMAGE`, an image that runs wharf-proxy"
                    .to_owned(),
            ),
            (None, Some(_)) => Err("`--router-image` goes with `--router wharf`".to_owned()),
            (None, None) => Ok(None),
        }
    }
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
    let kubernetes_only = args.namespace.is_some()
        || args.gateway.is_some()
        || args.router.router.is_some()
        || args.router.router_image.is_some();
    if args.target == RenderTarget::Wharf && kubernetes_only {
        eprintln!(
            "error: `--namespace`, `--gateway`, `--router` and `--router-image` need `--target kubernetes`"
        );
        return Ok(ExitStatus::Invalid);
    }
    let router = match args.router.spec(args.gateway.as_ref()) {
        Ok(router) => router,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
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
        return kubernetes(global, args, router, &manifest, &stack);
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
    router: Option<wharf_kube::RouterSpec>,
    manifest: &ManifestFile,
    stack: &wharf_manifest::Stack,
) -> anyhow::Result<ExitStatus> {
    let target = wharf_kube::Target {
        namespace: args.namespace.clone(),
        gateway: args.gateway.clone(),
        router,
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
    for service in &rendered.unfilled_tables {
        eprintln!(
            "note: service `{service}`: its router's table (ConfigMap `{}`) names the versions' Service addresses, which the cluster assigns: `wharf cluster apply --router wharf` fills it in, and the router serves nothing until then",
            wharf_kube::router::router_name(service)
        );
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
