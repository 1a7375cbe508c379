//! `wharf cluster deploy | pause | resume | promote | abort --controller URL`: the same
//! commands, carried out by a running `wharf cluster serve` instead of this process. The
//! token comes from `$WHARF_TOKEN` (a `wharf token create` token) or `$WHARF_API_TOKEN`.
//!
//! `deploy` starts the rollout, then follows it until it ends — across a failover of the
//! controller too: while no replica answers (the standby takes over within the lease's TTL)
//! it keeps asking, for up to five minutes.

use std::time::Duration;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

use super::super::cluster::{CommandArgs, DeployArgs};
use crate::cli::{Global, Output};
use crate::exit::ExitStatus;

/// How long `deploy` keeps following a rollout while the controller does not answer.
const UNREACHABLE_PATIENCE: Duration = Duration::from_secs(300);

/// One HTTP exchange with the controller.
struct Controller {
    base: String,
    token: String,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// What the controller answered: its status and JSON body (`Null` when it sent none).
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn error(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("the controller answered {}", self.status))
    }

    /// The exit status for a refusal: the request's fault (2) or not (1).
    fn refusal(&self) -> ExitStatus {
        match self.status {
            400 | 404 | 409 => ExitStatus::Invalid,
            _ => ExitStatus::Failed,
        }
    }
}

impl Controller {
    fn new(url: &str) -> Result<Controller, String> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(format!(
                "--controller `{url}`: an http:// URL is needed (the controller serves plain HTTP inside the cluster; reach it through its Service, or `kubectl port-forward`)"
            ));
        }
        let token = std::env::var("WHARF_TOKEN")
            .or_else(|_| std::env::var("WHARF_API_TOKEN"))
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                "the controller needs a token: set WHARF_TOKEN (from `wharf token create`) or WHARF_API_TOKEN".to_owned()
            })?;
        Ok(Controller {
            base,
            token: token.trim().to_owned(),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
        })
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Answer> {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .with_context(|| format!("cannot make a request to {}", self.base))?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status().as_u16();
            let bytes = response.into_body().collect().await?.to_bytes();
            anyhow::Ok(Answer {
                status,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            })
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| anyhow::anyhow!("{} did not answer within 30 s", self.base))?
            .with_context(|| format!("cannot reach the controller at {}", self.base))
    }
}

pub(crate) async fn deploy(
    global: &Global,
    url: &str,
    args: &DeployArgs,
) -> anyhow::Result<ExitStatus> {
    if args.analysis.prometheus.is_some()
        || args.analysis.requests_query.is_some()
        || args.analysis.errors_query.is_some()
    {
        eprintln!(
            "error: with --controller the rollout is judged by the controller's own settings (`wharf cluster serve --prometheus …`); drop --prometheus, --requests-query and --errors-query"
        );
        return Ok(ExitStatus::Invalid);
    }
    if let Some(flag) = cluster_flag(&args.connect) {
        eprintln!(
            "error: {flag} is the controller's setting with --controller (it runs the rollout in its own namespace); drop it"
        );
        return Ok(ExitStatus::Invalid);
    }
    let controller = match Controller::new(url) {
        Ok(controller) => controller,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let started = controller
        .call(
            "POST",
            "/v1/cluster/rollouts",
            Some(json!({"service": args.service, "version": args.version})),
        )
        .await?;
    if !(200..300).contains(&started.status) {
        eprintln!("error: {}", started.error());
        return Ok(started.refusal());
    }
    let id = started.body["rollout"].as_u64().unwrap_or(0);
    eprintln!(
        "rollout {id} of {} to {}: {} by the controller at {}",
        args.service,
        args.version,
        if started.body["started"] == true {
            "started"
        } else {
            "already under way"
        },
        controller.base
    );
    follow(global, &controller, &args.service, &args.version, id).await
}

/// A flag that chooses a cluster or namespace, which the controller decides for itself.
pub(crate) fn cluster_flag(connect: &super::super::cluster::ConnectArgs) -> Option<&'static str> {
    if connect.kubeconfig.is_some() {
        Some("--kubeconfig")
    } else if connect.context.is_some() {
        Some("--context")
    } else if connect.namespace.is_some() {
        Some("--namespace")
    } else if connect.environment.is_some() {
        Some("--env")
    } else {
        None
    }
}

/// Reports the rollout's phases until it ends; its outcome is the exit status. The rollout
/// is `id`: until the controller has saved it (its first step runs just after the answer),
/// the service's earlier rollout, or none, is what a read shows — and is not reported.
async fn follow(
    global: &Global,
    controller: &Controller,
    service: &str,
    version: &str,
    id: u64,
) -> anyhow::Result<ExitStatus> {
    let path = format!("/v1/cluster/rollouts/{service}");
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_phase = String::new();
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    let mut not_saved_since: Option<tokio::time::Instant> = None;
    loop {
        poll.tick().await;
        let answer = match controller.call("GET", &path, None).await {
            Ok(answer) if answer.status == 200 => answer,
            Ok(answer) if answer.status == 404 && answer.body["error"]["code"] == "no_rollout" => {
                if waited_too_long(&mut not_saved_since) {
                    eprintln!("error: the controller never saved rollout {id} of {service}");
                    return Ok(ExitStatus::Failed);
                }
                continue;
            }
            Ok(answer) if answer.status < 500 => {
                eprintln!("error: {}", answer.error());
                return Ok(answer.refusal());
            }
            failed => {
                let why = match failed {
                    Ok(answer) => answer.error(),
                    Err(error) => format!("{error:#}"),
                };
                let since = *unreachable_since.get_or_insert_with(|| {
                    eprintln!("the controller does not answer ({why}); still following");
                    tokio::time::Instant::now()
                });
                if since.elapsed() > UNREACHABLE_PATIENCE {
                    eprintln!(
                        "error: the controller has not answered for {UNREACHABLE_PATIENCE:?} ({why}); the rollout goes on there: `wharf cluster status`"
                    );
                    return Ok(ExitStatus::Failed);
                }
                continue;
            }
        };
        unreachable_since = None;
        let view = answer.body;
        match view["id"].as_u64() {
            Some(current) if current > id => {
                eprintln!("error: a later rollout of {service} replaced this one");
                return Ok(ExitStatus::Failed);
            }
            // The earlier rollout, still: this one is not saved yet.
            Some(current) if current < id || view["to"] != version => {
                if waited_too_long(&mut not_saved_since) {
                    eprintln!("error: the controller never saved rollout {id} of {service}");
                    return Ok(ExitStatus::Failed);
                }
                continue;
            }
            _ => {}
        }
        let phase = view["phase"].as_str().unwrap_or("").to_owned();
        if phase != last_phase {
            if global.output == Output::Human {
                eprintln!("{service} {version}: {phase}");
            }
            last_phase = phase;
        }
        if view["done"] == true {
            if global.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            }
            return Ok(match view["outcome"]["result"].as_str() {
                Some("succeeded") => {
                    if global.output == Output::Human {
                        println!("{service} {version}: succeeded");
                    }
                    ExitStatus::Ok
                }
                _ => {
                    if global.output == Output::Human {
                        println!(
                            "{service} {version}: rolled back ({})",
                            view["outcome"]["reason"].as_str().unwrap_or("")
                        );
                    }
                    ExitStatus::Failed
                }
            });
        }
    }
}

/// Whether the wait that began at `since` (now, when it had not begun) is past
/// [`UNREACHABLE_PATIENCE`].
fn waited_too_long(since: &mut Option<tokio::time::Instant>) -> bool {
    since
        .get_or_insert_with(tokio::time::Instant::now)
        .elapsed()
        > UNREACHABLE_PATIENCE
}

pub(crate) async fn steer(
    url: &str,
    args: &CommandArgs,
    command: &str,
) -> anyhow::Result<ExitStatus> {
    let controller = match Controller::new(url) {
        Ok(controller) => controller,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    if args.namespace.is_some() {
        eprintln!(
            "error: --namespace is the controller's setting with --controller (it steers the rollouts of its own namespace); drop it"
        );
        return Ok(ExitStatus::Invalid);
    }
    let answer = controller
        .call(
            "POST",
            &format!("/v1/cluster/rollouts/{}/{command}", args.service),
            Some(json!({"reason": args.reason})),
        )
        .await?;
    if (200..300).contains(&answer.status) {
        println!("{command}: sent to the rollout of {}", args.service);
        Ok(ExitStatus::Ok)
    } else {
        eprintln!("error: {}", answer.error());
        Ok(answer.refusal())
    }
}

pub(crate) async fn status(global: &Global, url: &str) -> anyhow::Result<ExitStatus> {
    let controller = match Controller::new(url) {
        Ok(controller) => controller,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitStatus::Invalid);
        }
    };
    let answer = controller.call("GET", "/v1/cluster/status", None).await?;
    if answer.status != 200 {
        eprintln!("error: {}", answer.error());
        return Ok(answer.refusal());
    }
    super::super::cluster::print_status(global.output, &answer.body)?;
    Ok(ExitStatus::Ok)
}
