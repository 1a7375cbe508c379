//! A control-plane replica on a PostgreSQL state: waiting for the control lease as a standby,
//! leading once it holds it (renewing every third of its TTL), and exiting at once when a
//! renewal fails — another replica has taken over, and this one's fencing token already
//! refuses its writes.
//!
//! Each replica leaves a one-line role file in `run/` (`standby HOLDER` or `leader`) so the
//! `wharf up -d` that started it can say which it became without a socket of its own: only
//! the leader binds `control.sock`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use wharf_control::Journal;
use wharf_ops::lease::{Candidate, Lease};

/// What a replica became, as its role file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It holds the lease and runs the control plane.
    Leader,
    /// It waits for the lease, held by the named replica.
    Standby(String),
}

fn role_file(state_dir: &Path, pid: u32) -> PathBuf {
    state_dir.join("run").join(format!("replica-{pid}.role"))
}

fn write_role(state_dir: &Path, role: &str) {
    let path = role_file(state_dir, std::process::id());
    let written =
        std::fs::create_dir_all(state_dir.join("run")).and_then(|()| std::fs::write(&path, role));
    if let Err(error) = written {
        tracing::warn!(%error, path = %path.display(), "cannot write the replica's role file");
    }
}

/// The role replica `pid` wrote, if any yet.
pub fn role(state_dir: &Path, pid: u32) -> Option<Role> {
    let text = std::fs::read_to_string(role_file(state_dir, pid)).ok()?;
    match text.trim().split_once(' ') {
        Some(("standby", holder)) => Some(Role::Standby(holder.to_owned())),
        _ if text.trim() == "leader" => Some(Role::Leader),
        _ => None,
    }
}

/// This replica's name in the lease and the ledger: who, on which host, which process.
fn holder() -> String {
    format!(
        "wharf-control@{}#{}",
        crate::cmd::audit::actor(),
        std::process::id()
    )
}

/// A held lease and the task renewing it.
pub struct Leadership {
    pub lease: Lease,
    candidate: Arc<Mutex<Candidate>>,
    renewer: tokio::task::JoinHandle<()>,
    state_dir: PathBuf,
}

impl Leadership {
    /// A clean end: stops renewing and gives the lease up, so a standby takes over at once.
    pub fn step_down(self) {
        self.renewer.abort();
        let released = self
            .candidate
            .lock()
            .map_err(|_| anyhow::anyhow!("the lease's connection was poisoned"))
            .and_then(|mut candidate| Ok(candidate.release(&self.lease)?));
        if let Err(error) = released {
            tracing::warn!(error = %format!("{error:#}"), "cannot give the control lease up; it runs out by itself");
        }
        let _ = std::fs::remove_file(role_file(&self.state_dir, std::process::id()));
    }
}

/// Waits until this replica holds the control lease (logging, once per leader, whom it waits
/// for), then renews it in the background for as long as the process runs. `None` when the
/// stack was stopped (`wharf down`) while it waited: a standby takes over a running stack, it
/// does not start again what an operator stopped.
pub async fn lead(state_dir: &Path, ttl: Duration) -> anyhow::Result<Option<Leadership>> {
    let candidate = Candidate::connect(state_dir, holder(), ttl)?;
    let since = candidate.ledger_size()?;
    let candidate = Arc::new(Mutex::new(candidate));
    // Polling a few times per TTL bounds a takeover at TTL plus one poll.
    let mut poll = tokio::time::interval((ttl / 10).max(Duration::from_millis(20)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut waiting_for: Option<String> = None;
    let lease = loop {
        poll.tick().await;
        let (taken, current) = blocking(&candidate, |c| Ok((c.try_take()?, c.current_holder()?)))
            .await
            .context("cannot contend for the control lease")?;
        if let Some(lease) = taken {
            break lease;
        }
        let leader = current.map(|(holder, _)| holder).unwrap_or_default();
        if waiting_for.as_deref() != Some(leader.as_str()) {
            tracing::info!(leader = %leader, ttl = ?ttl, "standby: waiting for the control lease");
            // Also on stderr (the detached replica's `control.log`), whatever `WHARF_LOG` says:
            // which replica waits for which is what an operator looks for there.
            eprintln!(
                "standby: {} waits for the control lease, held by {leader}",
                candidate_holder(&candidate)
            );
            write_role(state_dir, &format!("standby {leader}"));
            waiting_for = Some(leader);
        }
    };
    if blocking(&candidate, move |c| Ok(c.stopped_since(since)?)).await? {
        tracing::info!("the stack was stopped while this replica waited: not starting it again");
        let released = blocking(&candidate, move |c| Ok(c.release(&lease)?)).await;
        if let Err(error) = released {
            tracing::warn!(error = %format!("{error:#}"), "cannot give the control lease up; it runs out by itself");
        }
        let _ = std::fs::remove_file(role_file(state_dir, std::process::id()));
        return Ok(None);
    }
    tracing::info!(
        holder = %lease.holder,
        token = lease.token.value(),
        free_for = ?lease.free_for,
        "took the control lease: leading"
    );
    eprintln!(
        "{} leads: took the control lease under token {}",
        lease.holder,
        lease.token.value()
    );
    write_role(state_dir, "leader");
    let renewer = tokio::spawn(renew(candidate.clone(), lease.clone(), ttl));
    Ok(Some(Leadership {
        lease,
        candidate,
        renewer,
        state_dir: state_dir.to_owned(),
    }))
}

/// Renews `lease` every third of its TTL; on the first failure the process exits at once:
/// another replica leads, and nothing this one does from now on may reach the state.
pub(crate) async fn renew(candidate: Arc<Mutex<Candidate>>, lease: Lease, ttl: Duration) {
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let held = lease.clone();
        let why = match blocking(&candidate, move |c| Ok(c.renew(&held)?)).await {
            Ok(true) => continue,
            Ok(false) => "another replica took it over".to_owned(),
            Err(error) => format!("{error:#}"),
        };
        tracing::error!(token = lease.token.value(), why = %why, "lost the control lease: exiting now");
        eprintln!(
            "error: {} lost the control lease (token {}): {why}; exiting",
            lease.holder,
            lease.token.value()
        );
        std::process::exit(1);
    }
}

fn candidate_holder(candidate: &Arc<Mutex<Candidate>>) -> String {
    candidate
        .lock()
        .map(|c| c.holder().to_owned())
        .unwrap_or_default()
}

/// Runs `work` on the candidate's connection off the runtime's threads.
pub(crate) async fn blocking<R: Send + 'static>(
    candidate: &Arc<Mutex<Candidate>>,
    work: impl FnOnce(&mut Candidate) -> anyhow::Result<R> + Send + 'static,
) -> anyhow::Result<R> {
    let candidate = candidate.clone();
    tokio::task::spawn_blocking(move || {
        let mut candidate = candidate
            .lock()
            .map_err(|_| anyhow::anyhow!("the lease's connection was poisoned"))?;
        work(&mut candidate)
    })
    .await?
}

/// The leader's first entry: which replica took the lease, under which token, and how long
/// the lease had been free (the failover time as the database saw it).
pub fn record_leadership(journal: &mut Journal, lease: &Lease) {
    journal.record(
        wharf_ledger::KnownAction::ControlLeader,
        wharf_ops::lease::CONTROL_LEASE,
        serde_json::json!({
            "holder": lease.holder,
            "token": lease.token.value(),
            "free_for_ms": lease.free_for.map(|d| d.as_millis() as u64),
        }),
    );
}
