//! `wharf token create|list|revoke`, `wharf whoami`, `wharf approvals`, `wharf approve` and
//! `wharf reject`: identities and four-eyes. Tokens go through the one writer (the running
//! control plane's API, admin only, or `wharf-ops` under `control.lock` when none runs); a
//! token is printed once, on stdout, and kept nowhere. Deploy requests live in the running
//! control plane, so approving needs one. `$WHARF_TOKEN` makes a request its holder's.

use anyhow::Context;
use wharf_api::{
    Caller, CreateTokenRequest, CreatedToken, DecideDeployRequest, PendingDeploy,
    PendingDeployList, Role, TokenInfo, TokenList,
};

use crate::cli::{Global, Output};
use crate::client::{self, ApiRejected};
use crate::cmd::audit::actor;
use crate::exit::ExitStatus;
use crate::writer::{self, Route};

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make an API token for one person, with a role (viewer, operator, approver, admin).
    /// It is printed once; only its hash is kept.
    Create(TokenCreateArgs),
    /// Every token: holder, role, expiry, revocation (never the token).
    List,
    /// Revoke a person's token (by name or `t-N`): refused from the next request on.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, clap::Args)]
pub struct TokenCreateArgs {
    /// The holder's name, as the ledger will name them (`alice`).
    pub name: String,
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// How long it is valid (`30d`, `12h`; default 90d, at most 400d).
    #[arg(long = "expires-in", value_name = "DURATION")]
    pub expires_in: Option<String>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
}

#[derive(Debug, clap::Args)]
pub struct TokenRevokeArgs {
    /// The holder's name or the token's id (`t-3`).
    pub who: String,
}

#[derive(Debug, clap::Args)]
pub struct DecideArgs {
    /// The request (`r-3`), as `wharf approvals` lists it.
    pub id: String,
    /// Why (recorded in the ledger with your identity).
    #[arg(long)]
    pub reason: String,
}

pub fn token(global: &Global, command: TokenCommand) -> anyhow::Result<ExitStatus> {
    let state_dir = global.state_dir();
    match command {
        TokenCommand::Create(args) => {
            let request = CreateTokenRequest {
                name: args.name,
                role: args.role,
                expires_in: args.expires_in,
            };
            let created: CreatedToken = match writer::route(&state_dir)? {
                Route::Api => writer::call(&state_dir, "POST", "/v1/tokens", &request)?,
                Route::Local(lock) => {
                    let mut store = wharf_ops::read::open(&lock)?;
                    let (info, token) = wharf_ops::tokens::create(
                        &mut store,
                        &wharf_ops::Actor(actor()),
                        &request.name,
                        request.role,
                        request.expires_in.as_deref(),
                        jiff::Timestamp::now(),
                    )?;
                    CreatedToken { info, token }
                }
            };
            match global.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&created)?),
                Output::Human => {
                    eprintln!(
                        "token {} for `{}` ({}), valid until {} — shown once; give it to them as WHARF_TOKEN:",
                        created.info.id,
                        created.info.name,
                        created.info.role,
                        created.info.expires_at
                    );
                    println!("{}", created.token);
                }
            }
            Ok(ExitStatus::Ok)
        }
        TokenCommand::List => {
            let tokens = match writer::route(&state_dir)? {
                Route::Api => {
                    writer::call::<TokenList>(&state_dir, "GET", "/v1/tokens", &())?.tokens
                }
                Route::Local(lock) => {
                    let store = wharf_ops::read::open(&lock)?;
                    wharf_ops::tokens::list(&store)?
                }
            };
            match global.output {
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&TokenList { tokens })?)
                }
                Output::Human => print_tokens(&tokens),
            }
            Ok(ExitStatus::Ok)
        }
        TokenCommand::Revoke(args) => {
            let info: TokenInfo = match writer::route(&state_dir)? {
                Route::Api => writer::call(
                    &state_dir,
                    "POST",
                    &format!("/v1/tokens/{}/revoke", writer::segment(&args.who)),
                    &(),
                )?,
                Route::Local(lock) => {
                    let mut store = wharf_ops::read::open(&lock)?;
                    wharf_ops::tokens::revoke(
                        &mut store,
                        &wharf_ops::Actor(actor()),
                        &args.who,
                        jiff::Timestamp::now(),
                    )?
                }
            };
            match global.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&info)?),
                Output::Human => println!("revoked {} of `{}`", info.id, info.name),
            }
            Ok(ExitStatus::Ok)
        }
    }
}

fn print_tokens(tokens: &[TokenInfo]) {
    if tokens.is_empty() {
        println!("no tokens (`wharf token create NAME --role ROLE`)");
        return;
    }
    let now = jiff::Timestamp::now();
    println!(
        "{:<6} {:<20} {:<9} {:<10} {:<22} CREATED BY",
        "ID", "NAME", "ROLE", "STATE", "EXPIRES"
    );
    for token in tokens {
        let state = if token.revoked_at.is_some() {
            "revoked"
        } else if token
            .expires_at
            .parse::<jiff::Timestamp>()
            .is_ok_and(|at| at <= now)
        {
            "expired"
        } else {
            "in force"
        };
        println!(
            "{:<6} {:<20} {:<9} {:<10} {:<22} {}",
            token.id,
            token.name,
            token.role,
            state,
            token.expires_at.get(..19).unwrap_or(&token.expires_at),
            token.created_by
        );
    }
}

/// Calls the running control plane; a refusal is printed and becomes exit 2.
fn ask<T: serde::de::DeserializeOwned>(
    global: &Global,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Result<T, ExitStatus>> {
    let state_dir = global.state_dir();
    let answer = crate::cmd::rollout::block_on(async {
        Ok(client::call_ok(&state_dir, method, path, body).await)
    })?;
    match answer {
        Ok(value) => Ok(Ok(serde_json::from_value(value)
            .with_context(|| format!("unreadable answer to {method} {path}"))?)),
        Err(err) if err.is::<ApiRejected>() => {
            eprintln!("error: {err}");
            Ok(Err(ExitStatus::Invalid))
        }
        Err(err) => Err(err),
    }
}

pub fn whoami(global: &Global) -> anyhow::Result<ExitStatus> {
    let caller: Caller = match ask(global, "GET", "/v1/whoami", None)? {
        Ok(caller) => caller,
        Err(status) => return Ok(status),
    };
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&caller)?),
        Output::Human => println!("{} ({}, by {})", caller.name, caller.role, caller.via),
    }
    Ok(ExitStatus::Ok)
}

pub fn approvals(global: &Global) -> anyhow::Result<ExitStatus> {
    let list: PendingDeployList = match ask(global, "GET", "/v1/approvals", None)? {
        Ok(list) => list,
        Err(status) => return Ok(status),
    };
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Output::Human => {
            if list.deploys.is_empty() {
                println!("no requests for approval");
            }
            for request in &list.deploys {
                print_request(request);
            }
        }
    }
    Ok(ExitStatus::Ok)
}

/// One line per request, and one per approval.
pub fn print_request(request: &PendingDeploy) {
    let state = serde_json::to_value(request.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "{} {} — {} ({}/{} approvals), requested by {}, expires {}",
        request.id,
        request.summary(),
        state,
        request.approvals.len(),
        request.approvals_required,
        request.requested_by,
        request.expires_at.get(..19).unwrap_or(&request.expires_at),
    );
    for approval in &request.approvals {
        println!("    approved by {}: {}", approval.by, approval.reason);
    }
    if let Some(rejected) = &request.rejected_by {
        println!("    rejected by {}: {}", rejected.by, rejected.reason);
    }
    if let Some(reason) = &request.reason {
        println!("    not started: {reason}");
    }
    if let Some(rollout) = request.rollout_id {
        println!(
            "    started rollout #{rollout} (`wharf rollout status {}`)",
            request.service
        );
    }
    if let Some(job) = request.job_id {
        println!("    started job {job} (`wharf backup show {job}`)");
    }
}

pub fn decide(global: &Global, args: &DecideArgs, approve: bool) -> anyhow::Result<ExitStatus> {
    let verb = if approve { "approve" } else { "reject" };
    let body = serde_json::to_value(DecideDeployRequest {
        reason: args.reason.clone(),
    })?;
    let path = format!("/v1/approvals/{}/{verb}", writer::segment(&args.id));
    let request: PendingDeploy = match ask(global, "POST", &path, Some(body))? {
        Ok(request) => request,
        Err(status) => return Ok(status),
    };
    match global.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&request)?),
        Output::Human => print_request(&request),
    }
    Ok(if request.state == wharf_api::DeployRequestState::Failed {
        ExitStatus::Failed
    } else {
        ExitStatus::Ok
    })
}
