//! `wharf deploy SERVICE --version V`: start a rollout of a new version through the control
//! plane (canary, blue-green or recreate); `--watch` follows it to its end.

use clap::ValueEnum;
use wharf_api::DeployRequest;

use crate::cli::Global;
use crate::cmd::rollout;
use crate::exit::ExitStatus;

#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The service to deploy.
    pub service: String,
    /// The new version's name (what `${VERSION}` and the `X-Wharf-Version` header carry).
    /// Without it, a service with `build:` deploys its source as it is now: the version is
    /// the digest of its build context, as `wharf up` gives it (other services need it).
    #[arg(long)]
    pub version: Option<String>,
    /// The new version's command line as one string, split as a shell would (default: the
    /// service's current command).
    #[arg(long, value_name = "\"CMD ARGS\"", value_parser = parse_command_line)]
    pub command: Option<CommandLine>,
    /// How to roll out (default: the manifest's `rollout.strategy`).
    #[arg(long, value_enum)]
    pub strategy: Option<Strategy>,
    /// Follow the rollout until it ends: exit 0 when it succeeds, 1 when it rolls back.
    #[arg(long)]
    pub watch: bool,
}

/// A command line split into its words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

/// Splits `--command` like a POSIX shell: quotes group words, nothing is expanded.
pub fn parse_command_line(text: &str) -> Result<CommandLine, String> {
    let words = shlex::split(text)
        .ok_or_else(|| "unbalanced quotes or a trailing backslash in the command".to_owned())?;
    if words.is_empty() {
        return Err("the command is empty".to_owned());
    }
    Ok(CommandLine(words))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Shift traffic step by step, each step judged on the new version's errors and latency.
    Canary,
    /// Start the new version beside the old one, then switch all traffic at once.
    BlueGreen,
    /// Stop the old version, then start the new one.
    Recreate,
}

impl Strategy {
    /// The name the API expects (`canary`, `blue-green`, `recreate`).
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

impl DeployArgs {
    pub fn request(&self) -> DeployRequest {
        DeployRequest {
            version: self.version.clone().unwrap_or_default(),
            command: self.command.as_ref().map(|c| c.0.clone()),
            strategy: self.strategy.map(Strategy::name),
        }
    }
}

/// The version of a deploy without `--version`: a built service's digest of its build context
/// (read now), else why there is none.
fn version_from_source(global: &Global, service: &str) -> anyhow::Result<Result<String, String>> {
    let manifest = crate::manifest_file::ManifestFile::read(global)?;
    let Some(stack) = manifest.load(None).stack else {
        return Ok(Err(format!(
            "{} has errors; run `wharf validate` to see them",
            manifest.display
        )));
    };
    let workdir = crate::cmd::up::absolute(
        manifest
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new(".")),
    )?;
    let plan = match crate::cmd::up::plan_with_builds(&stack, &workdir) {
        Ok(plan) => plan,
        Err(errors) => {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Ok(Err(text.join("; ")));
        }
    };
    let built = plan.service(service).and_then(|s| {
        let build = s.container.as_ref()?.build.as_ref()?;
        Some((s.version.clone(), build.versioned_by_content))
    });
    Ok(match built {
        Some((version, true)) => Ok(version),
        Some((_, false)) => Err(format!(
            "service `{service}` sets `version:`, so its source does not name its versions: give `--version`"
        )),
        None => Err(
            "give `--version`: only a service with `build:` takes its version from its source"
                .to_owned(),
        ),
    })
}

pub fn run(global: &Global, args: &DeployArgs) -> anyhow::Result<ExitStatus> {
    let mut request = args.request();
    if args.version.is_none() {
        match version_from_source(global, &args.service)? {
            Ok(version) => {
                eprintln!(
                    "deploying {} version {version} (its build context as it is now)",
                    args.service
                );
                request.version = version;
            }
            Err(reason) => {
                eprintln!("error: {reason}");
                return Ok(ExitStatus::Invalid);
            }
        }
    }
    let body = serde_json::to_value(request)?;
    let path = format!("/v1/services/{}/deploy", args.service);
    rollout::block_on(async {
        let value =
            match crate::client::call_ok(&global.state_dir(), "POST", &path, Some(body)).await {
                Ok(value) => value,
                Err(err) if err.is::<crate::client::ApiRejected>() => {
                    eprintln!("error: {err}");
                    return Ok(ExitStatus::Invalid);
                }
                Err(err) => return Err(err),
            };
        // The environment requires approvals: the deploy waits as a request.
        if value.get("approvals_required").is_some() {
            let pending: wharf_api::PendingDeploy = serde_json::from_value(value)?;
            match global.output {
                crate::cli::Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&pending)?)
                }
                crate::cli::Output::Human => {
                    crate::cmd::access::print_request(&pending);
                    eprintln!(
                        "waits for {} approval(s) by others: `wharf approve {} --reason …`",
                        pending.approvals_required, pending.id
                    );
                }
            }
            return Ok(ExitStatus::Ok);
        }
        let view = serde_json::from_value(value).map_err(|e| {
            anyhow::anyhow!("the control plane sent a rollout this wharf cannot read: {e}")
        })?;
        rollout::started(global, view, args.watch).await
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<DeployArgs, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("wharf").chain(args.iter().copied()))?;
        match cli.command {
            Command::Deploy(args) => Ok(args),
            other => panic!("not a deploy: {other:?}"),
        }
    }

    #[test]
    fn deploy_with_every_option() {
        let args = parse(&[
            "deploy",
            "api",
            "--version",
            "v2",
            "--command",
            "./api --greeting 'hello world' -v",
            "--strategy",
            "blue-green",
            "--watch",
        ])
        .unwrap();
        assert!(args.watch);
        let request = args.request();
        assert_eq!(request.version, "v2");
        assert_eq!(
            request.command.unwrap(),
            ["./api", "--greeting", "hello world", "-v"]
        );
        assert_eq!(request.strategy.as_deref(), Some("blue-green"));
    }

    #[test]
    fn deploy_defaults_leave_command_and_strategy_to_the_control_plane() {
        let request = parse(&["deploy", "api", "--version", "v2"])
            .unwrap()
            .request();
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            serde_json::json!({"version": "v2"})
        );
    }

    #[test]
    fn deploy_usage_errors() {
        use clap::error::ErrorKind;
        let cases: [(&[&str], ErrorKind); 4] = [
            (&["deploy"], ErrorKind::MissingRequiredArgument),
            (
                &["deploy", "api", "--version", "v2", "--strategy", "rolling"],
                ErrorKind::InvalidValue,
            ),
            (
                &[
                    "deploy",
                    "api",
                    "--version",
                    "v2",
                    "--command",
                    "./api 'open",
                ],
                ErrorKind::ValueValidation,
            ),
            (
                &["deploy", "api", "--version", "v2", "--command", "  "],
                ErrorKind::ValueValidation,
            ),
        ];
        for (args, kind) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), kind, "{args:?}: {err}");
            // Usage errors go to stderr, which main turns into exit 2.
            assert!(err.use_stderr());
        }
    }

    #[test]
    fn strategy_names_are_the_apis() {
        let names: Vec<String> = Strategy::value_variants()
            .iter()
            .map(|s| s.name())
            .collect();
        assert_eq!(names, ["canary", "blue-green", "recreate"]);
    }
}
