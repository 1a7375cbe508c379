//! Backups: the datastores' schedules, the jobs that back up, drill, restore, prune and verify,
//! and each datastore's backup health (`ok`, `pending`, `failed`, `overdue`) — the dead-man's
//! switch for backups, shown in `status`, `/health/detailed` and `preflight`, and the gate a
//! deploy into an environment with `require: {backup_max_age, drill_max_age}` passes.
//!
//! The loop only decides: which job starts, with the datastore's address and the repository's
//! password resolved from secrets in memory. The job itself (`wharf-backup`: the engine's tool
//! streamed into a restic repository, a sandbox server for a drill) runs on a blocking thread
//! and answers `Event::Backup` with its outcome; the loop then records it — its row and its
//! ledger entry in one transaction — and updates the datastore's state.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use wharf_api::{
    BackupHealth, ControlError, DatastoreBackups, ErrorCode, Job, JobCheck, JobKind, JobState,
    JobTrigger, RestoreTarget,
};
use wharf_ledger::KnownAction;
use wharf_manifest::model::{DrillPeriod, DrillSchedule, Requirements};
use wharf_manifest::values::CronSchedule;

use super::Core;
use super::inject::Injector;
use super::sandbox_app::SandboxApp;
use crate::events::Event;
use crate::plan::{BACKUP_PASSWORD_SECRET, ServicePlan, StackPlan};

/// Finished jobs kept in memory for `GET /v1/backups` and job polling.
const RECENT_JOBS: usize = 100;
/// A failed scheduled backup is tried again after this long (or at its next time, if sooner).
const RETRY_AFTER_MS: i64 = 15 * 60_000;
/// A scheduled backup is overdue once this long past its time without a success (at most
/// half the schedule's period, so a backup every minute is overdue within 30 s).
const OVERDUE_GRACE_MS: i64 = 10 * 60_000;

/// The default backup repository of a state directory: a restic repository in `backups/`.
fn repository_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("backups")
}

/// A folder repository as the manifest writes it (`./vault`, `local:/srv/x`), from `workdir`.
fn local_path(workdir: &Path, text: &str) -> PathBuf {
    workdir.join(text.strip_prefix("local:").unwrap_or(text))
}

/// Where the backup repository is, as people and restic write it (never a key): the
/// manifest's `backups.repository` (a folder relative to `workdir`, or an S3 location), else
/// the state directory's `backups/`.
pub fn repository_text(
    state_dir: &Path,
    workdir: &Path,
    repository: Option<&wharf_manifest::model::BackupRepository>,
) -> String {
    match repository {
        None => repository_dir(state_dir).display().to_string(),
        Some(r) if r.repository.starts_with("s3:") => r.repository.clone(),
        Some(r) => local_path(workdir, &r.repository).display().to_string(),
    }
}

/// Where the manifest puts the repository — a folder (relative to the manifest) or S3 with
/// its keys resolved from secrets — else the state directory's `backups/`.
fn location(
    core: &Core,
    injector: &Injector,
    repository: Option<&wharf_manifest::model::BackupRepository>,
) -> Result<wharf_backup::RepoLocation, String> {
    let Some(repository) = repository else {
        return Ok(wharf_backup::RepoLocation::Local(repository_dir(
            &core.config.state_dir,
        )));
    };
    if !repository.repository.starts_with("s3:") {
        return Ok(wharf_backup::RepoLocation::Local(local_path(
            &core.config.workdir,
            &repository.repository,
        )));
    }
    let resolve = |text: &Option<String>, what: &str| -> Result<String, String> {
        let text = text
            .as_deref()
            .ok_or_else(|| format!("an S3 repository needs `backups.{what}`"))?;
        injector
            .resolve_text(core, text)
            .map_err(|why| format!("`backups.{what}`: {why}"))
    };
    let credentials = wharf_backup::S3Credentials::new(
        resolve(&repository.access_key_id, "access_key_id")?,
        wharf_backup::Secret::new(resolve(&repository.secret_access_key, "secret_access_key")?),
    );
    let mut at = wharf_backup::RepoLocation::parse(&repository.repository, Some(credentials))
        .map_err(|e| e.to_string())?;
    if let (wharf_backup::RepoLocation::S3(s3), Some(region)) = (&at, &repository.region) {
        at = wharf_backup::RepoLocation::S3(s3.clone().with_region(region.clone()));
    }
    Ok(at)
}

/// One datastore with `backup:` and where its backups stand.
struct Datastore {
    plan: ServicePlan,
    schedule: CronSchedule,
    drill: Option<CronSchedule>,
    next_backup_ms: Option<i64>,
    next_drill_ms: Option<i64>,
    last_success: Option<Job>,
    last_failure: Option<Job>,
    last_drill_passed: Option<Job>,
    last_drill_failed: Option<Job>,
    /// The job running on it (one at a time per datastore).
    busy: Option<u64>,
}

/// A restore into the running datastore waiting for its dependents to stop.
struct HeldRestore {
    job: Job,
    input: JobInput,
    /// Services stopped for it (wanted again when it ends); `None` until decided.
    held: Option<Vec<String>>,
    /// When it began to wait: past [`HOLD_PATIENCE`] it fails and lets its dependents go.
    since: std::time::Instant,
}

/// How long an in-place restore waits for its datastore's dependents to stop.
const HOLD_PATIENCE: Duration = Duration::from_secs(300);

/// The subsystem: datastores, jobs in flight, recent jobs.
pub(super) struct Backups {
    datastores: BTreeMap<String, Datastore>,
    running: BTreeMap<u64, Job>,
    holding: Vec<HeldRestore>,
    /// Services to want again once the restore `job` ends.
    held_by: BTreeMap<u64, Vec<String>>,
    /// Service → the in-place restores holding it (stopped): reconciliation keeps it unwanted
    /// whatever else wants it (a reload, a restart) until the last of them ends.
    holds: BTreeMap<String, std::collections::BTreeSet<u64>>,
    recent: VecDeque<Job>,
    next_id: u64,
    /// When this control plane started: no backup counts as missed before it, for a
    /// datastore that never had one.
    since_ms: i64,
    /// What the chosen environment demands before a deploy, and its name.
    require: Option<Requirements>,
    /// The manifest's smoke checks (a drill aims them at sandbox apps).
    pub(super) smoke: Vec<wharf_manifest::model::SmokeCheck>,
    /// The manifest's `backups:` (the repository's location and keys).
    repository: Option<wharf_manifest::model::BackupRepository>,
    environment: Option<String>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn job_ms(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// When the job's outcome was known (a finished job), else when it started.
fn job_time(job: &Job) -> i64 {
    job.finished_at
        .as_deref()
        .or(Some(&job.started_at))
        .and_then(job_ms)
        .unwrap_or(0)
}

fn drill_cron(drill: &DrillSchedule) -> CronSchedule {
    let text = match drill {
        DrillSchedule::Cron(cron) => return cron.clone(),
        DrillSchedule::Every(DrillPeriod::Daily) => "0 4 * * *",
        DrillSchedule::Every(DrillPeriod::Weekly) => "0 4 * * 0",
        DrillSchedule::Every(DrillPeriod::Monthly) => "0 4 1 * *",
    };
    text.parse().expect("a fixed cron expression")
}

/// The backup health of a schedule: pure, so its edges are unit-tested.
/// `since_ms` is when the datastore's backups began to be expected.
pub(super) fn health(
    schedule: &CronSchedule,
    last_success_ms: Option<i64>,
    last_failure: Option<(i64, &str)>,
    since_ms: i64,
    now_ms: i64,
) -> (BackupHealth, Option<String>) {
    if let Some((failed_at, why)) = last_failure
        && last_success_ms.is_none_or(|ok| failed_at > ok)
    {
        return (
            BackupHealth::Failed,
            Some(format!(
                "the last backup failed at {}: {why}",
                rfc3339(failed_at)
            )),
        );
    }
    let period = schedule
        .last_at_or_before(now_ms)
        .and_then(|last| Some(schedule.next_after(last)? - last))
        .unwrap_or(OVERDUE_GRACE_MS * 2);
    let grace = OVERDUE_GRACE_MS.min(period / 2);
    let Some(due) = schedule.last_at_or_before(now_ms - grace) else {
        return (BackupHealth::Pending, None);
    };
    match last_success_ms {
        Some(ok) if ok >= due => (BackupHealth::Ok, None),
        Some(ok) => (
            BackupHealth::Overdue,
            Some(format!(
                "no backup since the one due at {} (last good: {})",
                rfc3339(due),
                rfc3339(ok)
            )),
        ),
        None if due < since_ms => (BackupHealth::Pending, None),
        None => (
            BackupHealth::Overdue,
            Some(format!("no backup ever; one was due at {}", rfc3339(due))),
        ),
    }
}

impl Backups {
    /// The datastores of `plan` with backups, their last outcomes read from the store.
    pub(super) fn new(core: &mut Core, plan: &StackPlan) -> Backups {
        let next_id = core
            .journal
            .store()
            .last_backup_job_id()
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot read backup jobs");
                0
            })
            + 1;
        let (interrupted, recent): (Vec<Job>, Vec<Job>) = core
            .journal
            .store()
            .backup_jobs(RECENT_JOBS as u32)
            .unwrap_or_default()
            .iter()
            .filter_map(|text| serde_json::from_str::<Job>(text).ok())
            .partition(|job| job.state == JobState::Running);
        let mut backups = Backups {
            datastores: BTreeMap::new(),
            running: BTreeMap::new(),
            holding: Vec::new(),
            held_by: BTreeMap::new(),
            holds: BTreeMap::new(),
            recent: recent.into(),
            next_id,
            since_ms: core.started_at.as_millisecond(),
            require: None,
            smoke: Vec::new(),
            repository: None,
            environment: None,
        };
        backups.set_plan(core, plan);
        // A job still running in the store ran in a control plane that stopped before it
        // ended: it ends now, as interrupted, with its row and its entry.
        for mut job in interrupted.into_iter().rev() {
            job.state = JobState::Failed;
            job.finished_at = Some(jiff::Timestamp::now().to_string());
            job.error = Some("interrupted: the control plane stopped while it ran".to_owned());
            backups.running.insert(job.id, job.clone());
            backups.finish(core, job);
        }
        backups
    }

    /// Follows the manifest: datastores added, changed or removed keep what is known of them.
    pub(super) fn set_plan(&mut self, core: &Core, plan: &StackPlan) {
        self.require = plan.require.clone();
        self.smoke = plan.smoke.clone();
        self.repository = plan.backup_repository.clone();
        self.environment = plan.environment.clone();
        let mut datastores = BTreeMap::new();
        for service in &plan.services {
            let Some(backup) = &service.backup else {
                continue;
            };
            let drill = backup.drill.as_ref().map(drill_cron);
            let previous = self.datastores.remove(&service.name);
            let mut store = match previous {
                Some(mut known) => {
                    known.plan = service.clone();
                    if known.schedule != backup.schedule {
                        known.next_backup_ms = None;
                    }
                    if known.drill != drill {
                        known.next_drill_ms = None;
                    }
                    known.schedule = backup.schedule.clone();
                    known.drill = drill;
                    known
                }
                None => {
                    let last = |kind: &str, state: &str| -> Option<Job> {
                        let text = core
                            .journal
                            .store()
                            .last_backup_job(&service.name, kind, state)
                            .ok()??;
                        serde_json::from_str(&text).ok()
                    };
                    Datastore {
                        plan: service.clone(),
                        schedule: backup.schedule.clone(),
                        drill,
                        next_backup_ms: None,
                        next_drill_ms: None,
                        last_success: last("backup", "succeeded"),
                        last_failure: last("backup", "failed"),
                        last_drill_passed: last("drill", "succeeded"),
                        last_drill_failed: last("drill", "failed"),
                        busy: None,
                    }
                }
            };
            // The first time is the one after the last success (a time missed while no
            // control plane ran comes due at once), or after now.
            let from = store
                .last_success
                .as_ref()
                .map(job_time)
                .unwrap_or(self.since_ms);
            if store.next_backup_ms.is_none() {
                store.next_backup_ms = store.schedule.next_after(from);
            }
            if store.next_drill_ms.is_none() {
                let from = store
                    .last_drill_passed
                    .as_ref()
                    .map(job_time)
                    .unwrap_or(self.since_ms);
                store.next_drill_ms = store.drill.as_ref().and_then(|d| d.next_after(from));
            }
            datastores.insert(service.name.clone(), store);
        }
        self.datastores = datastores;
    }

    /// What the schedules made due now (their next times moved on).
    pub(super) fn due(&mut self) -> Vec<JobRequest> {
        let now = now_ms();
        let mut due = Vec::new();
        for (name, store) in &mut self.datastores {
            if store.busy.is_some() {
                continue;
            }
            let kind = if store.next_backup_ms.is_some_and(|at| at <= now) {
                store.next_backup_ms = store.schedule.next_after(now);
                JobKind::Backup
            } else if store.next_drill_ms.is_some_and(|at| at <= now) {
                store.next_drill_ms = store.drill.as_ref().and_then(|d| d.next_after(now));
                JobKind::Drill
            } else {
                continue;
            };
            due.push(JobRequest {
                kind,
                service: Some(name.clone()),
                trigger: JobTrigger::Schedule,
                snapshot: None,
                target: None,
                read_data: false,
                dry_run: false,
            });
        }
        due
    }

    /// Whether `request` may start now: a datastore with backups, not busy, confirmed.
    pub(super) fn check(&self, request: &JobRequest) -> Result<(), ControlError> {
        let service = &request.service;
        if let Some(name) = &service {
            let Some(store) = self.datastores.get(name) else {
                let known: Vec<&str> = self.datastores.keys().map(String::as_str).collect();
                return Err(ControlError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "`{name}` is not a datastore with `backup:` in the manifest (those with backups: {})",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            if let Some(busy) = store.busy {
                return Err(ControlError::new(
                    ErrorCode::Rejected,
                    format!(
                        "{name} is busy with job {busy}; wait for it (`wharf backup show {busy}`)"
                    ),
                ));
            }
        } else if request.kind != JobKind::Verify {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "this job needs a datastore",
            ));
        }
        if let Some(RestoreTarget::InPlace { confirm: false }) = &request.target {
            return Err(ControlError::new(
                ErrorCode::Rejected,
                format!(
                    "restoring into the running {} replaces its data; confirm it (`--confirm`)",
                    service.as_deref().unwrap_or("datastore")
                ),
            ));
        }
        Ok(())
    }

    /// Starts one job. Errors are the caller's (unknown datastore, one already busy, a restore
    /// without confirmation); a job that cannot reach its datastore or repository starts and
    /// fails, so the failure is recorded like any other.
    pub(super) fn start(
        &mut self,
        core: &mut Core,
        injector: &Injector,
        request: JobRequest,
        apps: Vec<SandboxApp>,
    ) -> Result<Job, ControlError> {
        self.check(&request)?;
        let service = request.service.clone();
        let id = self.next_id;
        self.next_id += 1;
        let started = now_ms();
        let mut job = Job {
            id,
            kind: request.kind,
            service: service.clone(),
            trigger: request.trigger,
            state: JobState::Running,
            started_at: rfc3339(started),
            finished_at: None,
            duration_ms: None,
            target: match &request.target {
                Some(RestoreTarget::InPlace { .. }) => Some("in place".to_owned()),
                Some(RestoreTarget::Sandbox) => Some("sandbox".to_owned()),
                Some(RestoreTarget::Url { .. }) | None => None,
            },
            snapshot: request.snapshot.clone(),
            bytes: None,
            added: None,
            rto_ms: None,
            rpo_s: None,
            checks: Vec::new(),
            forgotten: Vec::new(),
            error: None,
        };
        let input = self.input(core, injector, &request).map(|mut input| {
            input.apps = apps;
            input
        });
        if let Ok(JobInput { to: Some(to), .. }) = &input {
            job.target = describe_server(to);
        }
        if let Some(name) = &service
            && let Some(store) = self.datastores.get_mut(name)
        {
            store.busy = Some(id);
        }
        let input = match input {
            Ok(input) => input,
            Err(why) => {
                // Nothing to run: the job fails at once, recorded like one that ran.
                job.state = JobState::Failed;
                job.error = Some(why);
                job.finished_at = Some(rfc3339(started));
                job.duration_ms = Some(0);
                self.running.insert(id, job.clone());
                self.finish(core, job.clone());
                return Ok(job);
            }
        };
        self.running.insert(id, job.clone());
        self.save(core, &job);
        if let Some(RestoreTarget::InPlace { .. }) = &request.target {
            let name = service.clone().unwrap_or_default();
            self.holding.push(HeldRestore {
                job: job.clone(),
                input,
                held: None,
                since: std::time::Instant::now(),
            });
            core.journal.record(
                KnownAction::BackupRestoreBegin,
                &name,
                json!({"job": id, "snapshot": request.snapshot}),
            );
            return Ok(job);
        }
        core.journal.commit();
        spawn(core, job.clone(), input);
        Ok(job)
    }

    /// What a job needs, resolved: the datastore's address and the repository's password
    /// (secrets, in memory only).
    fn input(
        &self,
        core: &Core,
        injector: &Injector,
        request: &JobRequest,
    ) -> Result<JobInput, String> {
        let password = injector
            .resolve_text(core, &format!("${{secret:{BACKUP_PASSWORD_SECRET}}}"))
            .map_err(|why| {
                format!(
                    "the backup repository's password is not available ({why}); `wharf up` generates it, or store one with `wharf secret set {BACKUP_PASSWORD_SECRET}`"
                )
            })?;
        let datastore = match &request.service {
            None => None,
            Some(name) => {
                let store = &self.datastores[name];
                let kind = store
                    .plan
                    .kind
                    .ok_or_else(|| format!("{name} has no datastore `kind:`"))?;
                let url = match &store.plan.url {
                    Some(url) => Some(wharf_backup::Secret::new(
                        injector
                            .resolve_text(core, url)
                            .map_err(|why| format!("{name}'s url: {why}"))?,
                    )),
                    None => None,
                };
                let path = store
                    .plan
                    .path
                    .as_ref()
                    .map(|p| core.config.workdir.join(p));
                let datastore =
                    wharf_backup::Datastore::from_manifest(kind, url.as_ref(), path.as_deref())
                        .map_err(|e| format!("{name}: {e}"))?;
                let retain = store
                    .plan
                    .backup
                    .as_ref()
                    .map(|b| b.retain.clone())
                    .unwrap_or_default();
                Some((
                    datastore,
                    wharf_backup::Retention {
                        last: retain.last,
                        hourly: retain.hourly,
                        daily: retain.daily,
                        weekly: retain.weekly,
                        monthly: retain.monthly,
                        yearly: retain.yearly,
                    },
                ))
            }
        };
        let to = match (&request.target, &datastore) {
            (Some(RestoreTarget::Url { url }), Some((store, _))) => {
                // A secret only as the whole URL: no other secret can be spliced into a URL
                // that points elsewhere and so leave the control plane.
                let references = crate::plan::secret_references(url);
                let whole =
                    url.starts_with("${secret:") && url.ends_with('}') && references.len() == 1;
                if !references.is_empty() && !whole {
                    return Err("the target URL is either `${secret:NAME}` (a secret holding the whole URL) or a URL without secrets".to_owned());
                }
                let resolved = injector
                    .resolve_text(core, url)
                    .map_err(|why| format!("the target URL: {why}"))?;
                let target = wharf_backup::Datastore::from_url(
                    store.kind(),
                    &wharf_backup::Secret::new(resolved),
                )
                .map_err(|e| format!("the target URL: {e}"))?;
                if let Some(same) = same_server(store, &target) {
                    return Err(format!(
                        "the target is the datastore itself ({same}); restore into it with `--confirm`, which stops its dependents first"
                    ));
                }
                Some(target)
            }
            _ => None,
        };
        Ok(JobInput {
            to,
            stack: core.stack.clone(),
            service: request.service.clone(),
            kind: request.kind,
            datastore,
            repo: location(core, injector, self.repository.as_ref())?,
            password: wharf_backup::Secret::new(password),
            snapshot: request.snapshot.clone(),
            target: request.target.clone(),
            read_data: request.read_data,
            dry_run: request.dry_run,
            apps: Vec::new(),
        })
    }

    /// Restores waiting for their dependents to stop, with the dependents still to hold
    /// (`None`: not yet decided).
    pub(super) fn waiting_restores(
        &mut self,
    ) -> impl Iterator<Item = (u64, &str, &mut Option<Vec<String>>)> {
        self.holding.iter_mut().map(|waiting| {
            (
                waiting.job.id,
                waiting.job.service.as_deref().unwrap_or_default(),
                &mut waiting.held,
            )
        })
    }

    /// Records that restore `job` holds `service` stopped.
    pub(super) fn hold(&mut self, job: u64, service: &str) {
        self.holds
            .entry(service.to_owned())
            .or_default()
            .insert(job);
    }

    /// The services some restore holds stopped now.
    pub(super) fn held(&self) -> impl Iterator<Item = &str> {
        self.holds.keys().map(String::as_str)
    }

    /// An operator's `down` takes these services over: no restore wants them back.
    pub(super) fn release(&mut self, services: &[String]) {
        for name in services {
            self.holds.remove(name);
        }
        for held in self.held_by.values_mut() {
            held.retain(|name| !services.contains(name));
        }
        for waiting in &mut self.holding {
            if let Some(held) = &mut waiting.held {
                held.retain(|name| !services.contains(name));
            }
        }
    }

    /// Ends `job`'s holds; the services no other restore holds, to be wanted again.
    fn unhold(&mut self, job: u64, services: Vec<String>) -> Vec<String> {
        let mut free = Vec::new();
        for name in services {
            if let Some(jobs) = self.holds.get_mut(&name) {
                jobs.remove(&job);
                if jobs.is_empty() {
                    self.holds.remove(&name);
                    free.push(name);
                }
            }
        }
        free
    }

    /// Starts the waiting restores whose held dependents have all stopped.
    /// Returns the services to want again (the holds of restores that gave up waiting).
    pub(super) fn start_restores(
        &mut self,
        core: &mut Core,
        stopped: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut position = 0;
        let mut free = Vec::new();
        while position < self.holding.len() {
            let ready = self.holding[position]
                .held
                .as_ref()
                .is_some_and(|held| held.iter().all(|name| stopped(name)));
            if !ready && self.holding[position].since.elapsed() >= HOLD_PATIENCE {
                let waiting = self.holding.remove(position);
                let mut job = waiting.job;
                job.state = JobState::Failed;
                job.finished_at = Some(jiff::Timestamp::now().to_string());
                job.error = Some(format!(
                    "its datastore's dependents did not stop within {} s; nothing was restored",
                    HOLD_PATIENCE.as_secs()
                ));
                self.held_by
                    .insert(job.id, waiting.held.unwrap_or_default());
                free.extend(self.finish(core, job));
                continue;
            }
            if !ready {
                position += 1;
                continue;
            }
            let waiting = self.holding.remove(position);
            self.held_by
                .insert(waiting.job.id, waiting.held.unwrap_or_default());
            spawn(core, waiting.job, waiting.input);
        }
        free
    }

    /// A job ended: its state, its row and its ledger entry. Returns the services a restore
    /// held, to be wanted again.
    pub(super) fn finish(&mut self, core: &mut Core, job: Job) -> Vec<String> {
        if self.running.remove(&job.id).is_none() {
            return Vec::new();
        }
        let held = self.held_by.remove(&job.id).unwrap_or_default();
        let free = self.unhold(job.id, held.clone());
        if let Some(name) = &job.service
            && let Some(store) = self.datastores.get_mut(name)
        {
            if store.busy == Some(job.id) {
                store.busy = None;
            }
            let ok = job.state == JobState::Succeeded;
            match (job.kind, ok) {
                (JobKind::Backup, true) => store.last_success = Some(job.clone()),
                (JobKind::Backup, false) => {
                    store.last_failure = Some(job.clone());
                    if job.trigger == JobTrigger::Schedule {
                        let retry = now_ms() + RETRY_AFTER_MS;
                        store.next_backup_ms =
                            Some(store.next_backup_ms.map_or(retry, |at| at.min(retry)));
                    }
                }
                (JobKind::Drill, true) => store.last_drill_passed = Some(job.clone()),
                (JobKind::Drill, false) => store.last_drill_failed = Some(job.clone()),
                _ => {}
            }
        }
        self.save(core, &job);
        let ok = job.state == JobState::Succeeded;
        let action = match (job.kind, ok) {
            (JobKind::Backup, true) => KnownAction::BackupRun,
            (JobKind::Backup, false) => KnownAction::BackupFailed,
            (JobKind::Drill, _) => KnownAction::BackupDrill,
            (JobKind::Restore, _) => KnownAction::BackupRestore,
            (JobKind::Prune, _) => KnownAction::BackupPrune,
            (JobKind::Verify, _) => KnownAction::BackupVerify,
        };
        let target = job.service.clone().unwrap_or_else(|| core.stack.clone());
        let mut details = serde_json::to_value(&job).unwrap_or_default();
        if let Some(object) = details.as_object_mut() {
            object.remove("service");
            object.remove("started_at");
            if !held.is_empty() {
                object.insert("restarted".into(), json!(held));
            }
        }
        core.journal.record(action, &target, details);
        if job.state == JobState::Failed {
            tracing::warn!(job = job.id, kind = job.kind.as_str(), service = %target, error = job.error.as_deref().unwrap_or(""), "backup job failed");
        } else {
            tracing::info!(job = job.id, kind = job.kind.as_str(), service = %target, "backup job succeeded");
        }
        self.recent.push_front(job);
        self.recent.truncate(RECENT_JOBS);
        free
    }

    fn save(&self, core: &mut Core, job: &Job) {
        core.journal.save_backup_job(&wharf_store::BackupJobRow {
            id: job.id,
            kind: job.kind.as_str().to_owned(),
            service: job.service.clone(),
            state: job.state.as_str().to_owned(),
            started_at: job.started_at.clone(),
            job: serde_json::to_string(job).unwrap_or_default(),
        });
    }

    /// Whether a job runs now.
    pub(super) fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// A job, running or recent.
    pub(super) fn job(&self, id: u64) -> Option<Job> {
        self.running
            .get(&id)
            .or_else(|| self.recent.iter().find(|j| j.id == id))
            .cloned()
            .or_else(|| {
                self.holding
                    .iter()
                    .find(|h| h.job.id == id)
                    .map(|h| h.job.clone())
            })
    }

    /// Running jobs first, then the recent ones, newest first.
    pub(super) fn jobs(&self) -> Vec<Job> {
        let mut jobs: Vec<Job> = self.running.values().rev().cloned().collect();
        jobs.extend(self.recent.iter().cloned());
        jobs
    }

    /// Every datastore's backups as health and figures.
    pub(super) fn statuses(&self) -> Vec<DatastoreBackups> {
        let now = now_ms();
        self.datastores
            .iter()
            .map(|(name, store)| {
                let failure = store
                    .last_failure
                    .as_ref()
                    .map(|j| (job_time(j), j.error.as_deref().unwrap_or("failed")));
                let (health, reason) = health(
                    &store.schedule,
                    store.last_success.as_ref().map(job_time),
                    failure,
                    self.since_ms,
                    now,
                );
                DatastoreBackups {
                    service: name.clone(),
                    kind: store
                        .plan
                        .kind
                        .map(wharf_backup::kind_name)
                        .unwrap_or("datastore")
                        .to_owned(),
                    schedule: store.schedule.as_str().to_owned(),
                    health,
                    reason,
                    last_success: store.last_success.as_ref().map(|j| rfc3339(job_time(j))),
                    last_failure: store.last_failure.as_ref().map(|j| rfc3339(job_time(j))),
                    next_due: store.next_backup_ms.map(rfc3339),
                    last_drill_passed: store
                        .last_drill_passed
                        .as_ref()
                        .map(|j| rfc3339(job_time(j))),
                    last_drill_failed: store
                        .last_drill_failed
                        .as_ref()
                        .filter(|failed| {
                            store
                                .last_drill_passed
                                .as_ref()
                                .is_none_or(|ok| job_time(failed) > job_time(ok))
                        })
                        .map(|j| rfc3339(job_time(j))),
                    next_drill: store.next_drill_ms.map(rfc3339),
                    last_bytes: store.last_success.as_ref().and_then(|j| j.bytes),
                    last_duration_ms: store.last_success.as_ref().and_then(|j| j.duration_ms),
                }
            })
            .collect()
    }

    /// Whether `name` is a datastore with `backup:`.
    pub(super) fn has_datastore(&self, name: &str) -> bool {
        self.datastores.contains_key(name)
    }

    /// What the environment requires of a deploy (backups, drills, gates, approvals).
    pub(super) fn require(&self) -> Option<&Requirements> {
        self.require.as_ref()
    }

    /// The environment's name, when one was chosen.
    pub(super) fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    /// The environment chosen and what it demands (for the other `require` checks).
    pub(super) fn requirements(&self) -> (Option<&str>, Option<&Requirements>) {
        (self.environment.as_deref(), self.require.as_ref())
    }

    /// Why a deploy may not go ahead under the environment's `require` (`None`: it may).
    pub(super) fn gate(&self) -> Option<String> {
        let require = self.require.as_ref()?;
        let now = jiff::Timestamp::now();
        let problems: Vec<String> = self
            .statuses()
            .iter()
            .flat_map(|backups| unmet_requirements(require, backups, now))
            .collect();
        if problems.is_empty() {
            return None;
        }
        let env = match self.environment.as_deref() {
            Some(e) => format!("environment `{e}`"),
            None => "the manifest".to_owned(),
        };
        Some(format!("{env} requires it: {}", problems.join("; ")))
    }
}

/// What `require` finds unmet in one datastore's backups at `now` (empty: met): the gate a
/// deploy passes, and preflight's check of the same. Pure, over the API's view of them.
pub fn unmet_requirements(
    require: &Requirements,
    backups: &DatastoreBackups,
    now: jiff::Timestamp,
) -> Vec<String> {
    let name = &backups.service;
    let at = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    };
    let age = |t: jiff::Timestamp| {
        let secs = now.duration_since(t).unsigned_abs().as_secs();
        wharf_manifest::values::Duration(Duration::from_secs(secs))
    };
    let mut problems = Vec::new();
    if let Some(max) = require.backup_max_age {
        let (good, failed) = (at(&backups.last_success), at(&backups.last_failure));
        match good {
            None => problems.push(format!(
                "{name} has no successful backup (`wharf backup run {name}`)"
            )),
            Some(good) if age(good).0 > max.0 => problems.push(format!(
                "{name}'s last good backup is {} old, more than backup_max_age {max}",
                age(good)
            )),
            Some(good) if failed.is_some_and(|failed| failed > good) => problems.push(format!(
                "{name}'s last backup failed ({})",
                backups.reason.as_deref().unwrap_or("failed")
            )),
            Some(_) => {}
        }
    }
    if let Some(max) = require.drill_max_age {
        // `last_drill_failed` is set only when newer than the last pass.
        match (at(&backups.last_drill_passed), &backups.last_drill_failed) {
            (Some(_), Some(failed)) => {
                problems.push(format!("{name}'s last drill, at {failed}, failed"))
            }
            (None, _) => problems.push(format!(
                "{name} has no passed restore drill (`wharf drill {name}`)"
            )),
            (Some(passed), None) if age(passed).0 > max.0 => problems.push(format!(
                "{name}'s last passed drill is {} old, more than drill_max_age {max}",
                age(passed)
            )),
            (Some(_), None) => {}
        }
    }
    problems
}

impl Backups {
    /// Where the repository is, as people and restic write it (never a key).
    pub(super) fn repository_text(&self, core: &Core) -> String {
        repository_text(
            &core.config.state_dir,
            &core.config.workdir,
            self.repository.as_ref(),
        )
    }

    /// Lists the repository's snapshots on a blocking thread, which answers `reply`.
    pub(super) fn list_snapshots(
        &self,
        core: &Core,
        injector: &Injector,
        service: Option<String>,
        reply: tokio::sync::oneshot::Sender<Result<wharf_api::SnapshotList, ControlError>>,
    ) {
        if let Some(name) = &service
            && !self.datastores.contains_key(name)
        {
            let _ = reply.send(Err(ControlError::new(
                ErrorCode::InvalidRequest,
                format!("`{name}` is not a datastore with `backup:` in the manifest"),
            )));
            return;
        }
        let request = JobRequest {
            kind: JobKind::Verify,
            service: None,
            trigger: JobTrigger::Operator,
            snapshot: None,
            target: None,
            read_data: false,
            dry_run: false,
        };
        let input = match self.input(core, injector, &request) {
            Ok(input) => input,
            Err(why) => {
                let _ = reply.send(Err(ControlError::new(ErrorCode::Rejected, why)));
                return;
            }
        };
        let stack = core.stack.clone();
        tokio::task::spawn_blocking(move || {
            let listed = (|| {
                if let Some(dir) = input.repo.local_dir()
                    && !dir.join("config").exists()
                {
                    return Ok(Vec::new());
                }
                let repo = wharf_backup::Repo::open_at(&input.repo, &input.password)?;
                repo.backups(Some(&stack), service.as_deref())
            })();
            let answer = listed
                .map(|backups| wharf_api::SnapshotList {
                    repository: input.repo.to_string(),
                    snapshots: backups
                        .into_iter()
                        .rev()
                        .map(|b| wharf_api::Snapshot {
                            id: b.id,
                            time: b.time.to_string(),
                            service: b.service,
                            kind: wharf_backup::kind_name(b.kind).to_owned(),
                            bytes: b.bytes,
                            added: b.added,
                        })
                        .collect(),
                })
                .map_err(|e| {
                    ControlError::new(ErrorCode::Internal, input.password.scrub(&e.to_string()))
                });
            let _ = reply.send(answer);
        });
    }
}

impl super::ControlPlane {
    /// `POST /v1/backups`, `/v1/drills`, `/v1/restores`, `/v1/backups/prune`,
    /// `/v1/backups/verify`: the jobs started.
    pub(super) fn backup_command(
        &mut self,
        command: crate::events::BackupCommand,
    ) -> Result<wharf_api::JobsStarted, ControlError> {
        use crate::events::BackupCommand as C;
        let operator = |kind, service: Option<String>| JobRequest {
            kind,
            service,
            trigger: JobTrigger::Operator,
            snapshot: None,
            target: None,
            read_data: false,
            dry_run: false,
        };
        let requests: Vec<JobRequest> = match command {
            C::Backup(request) => match request.service {
                Some(name) => vec![operator(JobKind::Backup, Some(name))],
                None => self
                    .backups
                    .datastores
                    .keys()
                    .map(|name| operator(JobKind::Backup, Some(name.clone())))
                    .collect(),
            },
            C::Prune(request) => {
                let names: Vec<String> = match request.service {
                    Some(name) => vec![name],
                    None => self.backups.datastores.keys().cloned().collect(),
                };
                names
                    .into_iter()
                    .map(|name| JobRequest {
                        dry_run: request.dry_run,
                        ..operator(JobKind::Prune, Some(name))
                    })
                    .collect()
            }
            C::Drill(request) => vec![JobRequest {
                snapshot: request.snapshot,
                ..operator(JobKind::Drill, Some(request.service))
            }],
            C::Restore(request) => vec![JobRequest {
                snapshot: request.snapshot,
                target: Some(request.target),
                ..operator(JobKind::Restore, Some(request.service))
            }],
            C::Verify(request) => vec![JobRequest {
                read_data: request.read_data,
                ..operator(JobKind::Verify, None)
            }],
        };
        if requests.is_empty() {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "no datastore in the manifest has `backup:`",
            ));
        }
        // All or none: a refusal of one leaves no other started and unreported.
        for request in &requests {
            self.backups.check(request)?;
        }
        let mut jobs = Vec::new();
        for request in requests {
            let in_place = matches!(request.target, Some(RestoreTarget::InPlace { .. }));
            let service = request.service.clone().unwrap_or_default();
            jobs.push(self.start_job(request)?);
            if in_place {
                // A change the receivers hear of: its dependents stop around it.
                self.alerting.change(
                    &self.core,
                    &service,
                    format!("{service} being restored in place from a backup; its dependents stop meanwhile"),
                    BTreeMap::from([("action".to_owned(), "restore".to_owned())]),
                );
            }
        }
        Ok(wharf_api::JobsStarted { jobs })
    }

    /// Starts a job; a drill (or a restore into a sandbox) gets the datastore's dependents
    /// to start against the restored copy.
    fn start_job(&mut self, request: JobRequest) -> Result<Job, ControlError> {
        let sandboxed = request.kind == JobKind::Drill
            || matches!(request.target, Some(RestoreTarget::Sandbox));
        let apps = match (&request.service, sandboxed) {
            (Some(service), true) => self.sandbox_apps(service),
            _ => Vec::new(),
        };
        self.backups
            .start(&mut self.core, &self.injector, request, apps)
    }

    /// Scheduled jobs, and restores waiting for their datastore's dependents to stop.
    pub(super) fn drive_backups(&mut self) {
        for request in self.backups.due() {
            let service = request.service.clone().unwrap_or_default();
            if let Err(error) = self.start_job(request) {
                tracing::warn!(%service, error = %error.message, "a scheduled job could not start");
            }
        }
        let mut decided = Vec::new();
        for (job, service, held) in self.backups.waiting_restores() {
            if held.is_none() {
                decided.push((job, service.to_owned()));
            }
        }
        for (job, service) in decided {
            let dependents = self.dependents_of(&service);
            let mut held = Vec::new();
            for name in dependents {
                if let Some(index) = self.supervisor.index(&name)
                    && !self.supervisor.services[index].is_external()
                    && (self.supervisor.services[index].wanted
                        || self.backups.held().any(|h| h == name))
                {
                    held.push(name);
                }
            }
            for name in &held {
                self.backups.hold(job, name);
            }
            for (waiting, _, slot) in self.backups.waiting_restores() {
                if waiting == job {
                    *slot = Some(held.clone());
                }
            }
        }
        self.apply_holds();
        let supervisor = &self.supervisor;
        let free = self.backups.start_restores(&mut self.core, |name| {
            supervisor
                .index(name)
                .is_none_or(|index| supervisor.services[index].instances.is_empty())
        });
        self.want_again(free);
    }

    /// Keeps every service a restore holds unwanted, whatever wanted it meanwhile (a reload,
    /// a restart): called before each reconciliation.
    pub(super) fn apply_holds(&mut self) {
        let held: Vec<String> = self.backups.held().map(str::to_owned).collect();
        for name in held {
            if let Some(index) = self.supervisor.index(&name) {
                self.supervisor.services[index].wanted = false;
            }
        }
    }

    /// Services a restore held, wanted again — unless the stack (or they) are stopping.
    pub(super) fn want_again(&mut self, services: Vec<String>) {
        if self.supervisor.exit_when_stopped {
            return;
        }
        for name in services {
            let stopping = self
                .supervisor
                .pending_downs
                .iter()
                .any(|down| down.services.contains(&name));
            if let Some(index) = self.supervisor.index(&name)
                && !stopping
            {
                self.supervisor.services[index].wanted = true;
            }
        }
    }

    /// Every service that depends on `service`, directly or through others.
    fn dependents_of(&self, service: &str) -> Vec<String> {
        let mut found: Vec<String> = Vec::new();
        let mut frontier = vec![service.to_owned()];
        while let Some(current) = frontier.pop() {
            for other in &self.supervisor.services {
                if other.plan.depends_on.iter().any(|(dep, _)| *dep == current)
                    && !found.contains(&other.plan.name)
                {
                    found.push(other.plan.name.clone());
                    frontier.push(other.plan.name.clone());
                }
            }
        }
        found
    }
}

/// `host:port/database` of a server datastore, for messages and the ledger (never a password).
fn describe_server(store: &wharf_backup::Datastore) -> Option<String> {
    use wharf_backup::Datastore as D;
    Some(match store {
        D::Postgres(c) => format!("{}:{}/{}", c.host, c.port, c.dbname),
        D::Mariadb(c) => format!("{}:{}/{}", c.host, c.port, c.dbname),
        D::Redis(c) => format!("{}:{}", c.host, c.port),
        D::Sqlite(_) | D::Directory(_) => return None,
    })
}

/// Whether `target` is the same server and database as `store` (loopback names counted equal).
fn same_server(
    store: &wharf_backup::Datastore,
    target: &wharf_backup::Datastore,
) -> Option<String> {
    let normal = |text: String| {
        text.replace("localhost:", "127.0.0.1:")
            .replace("[::1]:", "127.0.0.1:")
            .replace("::1:", "127.0.0.1:")
    };
    let (a, b) = (describe_server(store)?, describe_server(target)?);
    (normal(a.clone()) == normal(b)).then_some(a)
}

/// What an API request or a schedule asks.
#[derive(Debug, Clone)]
pub(super) struct JobRequest {
    pub kind: JobKind,
    pub service: Option<String>,
    pub trigger: JobTrigger,
    pub snapshot: Option<String>,
    pub target: Option<RestoreTarget>,
    pub read_data: bool,
    pub dry_run: bool,
}

/// Everything a job's thread needs; secrets inside are zeroized when it ends.
struct JobInput {
    stack: String,
    service: Option<String>,
    kind: JobKind,
    datastore: Option<(wharf_backup::Datastore, wharf_backup::Retention)>,
    repo: wharf_backup::RepoLocation,
    password: wharf_backup::Secret,
    snapshot: Option<String>,
    target: Option<RestoreTarget>,
    read_data: bool,
    dry_run: bool,
    /// A drill's dependents to start against the restored copy.
    apps: Vec<SandboxApp>,
    /// A restore's target server given by URL.
    to: Option<wharf_backup::Datastore>,
}

/// Runs the job on a blocking thread; its outcome comes back as `Event::Backup`.
fn spawn(core: &Core, job: Job, input: JobInput) {
    let events = core.events.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let mut job = job;
        // A panic in an engine's driver still ends the job (as failed), so its datastore is
        // never left busy and its outcome is recorded.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| execute(&input, &mut job)))
                .unwrap_or_else(|_| {
                    Err(wharf_backup::BackupError::Restore(
                        "the job's thread panicked; see the control plane's log".to_owned(),
                    ))
                });
        job.duration_ms = Some(started.elapsed().as_millis() as u64);
        job.finished_at = Some(jiff::Timestamp::now().to_string());
        match result {
            Ok(()) => {
                if job.state == JobState::Running {
                    job.state = JobState::Succeeded;
                }
            }
            Err(error) => {
                job.state = JobState::Failed;
                job.error = Some(input.password.scrub(&summary(&error.to_string())));
            }
        }
        let _ = events.blocking_send(Event::Backup(Box::new(job)));
    });
}

/// An error in a few readable lines: the engine's and rustic's messages without their
/// backtraces and nonces, whitespace folded, bounded.
fn summary(text: &str) -> String {
    const MOST: usize = 800;
    let cut = ["\nBacktrace:", "\n\nContext:", "stack backtrace:"]
        .iter()
        .filter_map(|marker| text.find(marker))
        .min()
        .unwrap_or(text.len());
    let folded: String = text[..cut].split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.len() <= MOST {
        return folded;
    }
    let mut end = MOST;
    while !folded.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &folded[..end])
}

/// Creating a repository takes seconds and is not atomic: two jobs of a fresh install would
/// each write a key of their own. One creation at a time in this process.
static REPOSITORY_INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The job's work, filling `job` with what it found.
fn execute(input: &JobInput, job: &mut Job) -> wharf_backup::Result<()> {
    let tools = wharf_backup::Tools::from_env();
    if input.kind != JobKind::Backup
        && let Some(dir) = input.repo.local_dir()
        && !dir.join("config").exists()
    {
        let service = input.service.as_deref().unwrap_or("any datastore");
        return Err(wharf_backup::BackupError::Restore(format!(
            "{service} has no backup yet: the repository {} is empty (`wharf backup run`)",
            dir.display()
        )));
    }
    let repo = match input.kind {
        JobKind::Backup => {
            let _one = REPOSITORY_INIT
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wharf_backup::Repo::open_or_init_at(&input.repo, &input.password)?
        }
        _ => wharf_backup::Repo::open_at(&input.repo, &input.password)?,
    };
    let service = input.service.as_deref().unwrap_or_default();
    let pick = |repo: &wharf_backup::Repo| -> wharf_backup::Result<wharf_backup::Backup> {
        let backups = repo.backups(Some(&input.stack), Some(service))?;
        let found = match &input.snapshot {
            Some(id) => {
                let matching: Vec<wharf_backup::Backup> = backups
                    .into_iter()
                    .filter(|b| b.id.starts_with(id.as_str()))
                    .collect();
                if matching.len() > 1 {
                    return Err(wharf_backup::BackupError::Restore(format!(
                        "{id} names {} backups of {service}; give more of the id",
                        matching.len()
                    )));
                }
                matching.into_iter().next()
            }
            None => backups.into_iter().last(),
        };
        found.ok_or_else(|| {
            wharf_backup::BackupError::Restore(match &input.snapshot {
                Some(id) => format!("{service} has no backup {id}"),
                None => format!("{service} has no backup yet (`wharf backup run {service}`)"),
            })
        })
    };
    match input.kind {
        JobKind::Backup => {
            let (store, retention) = input.datastore.as_ref().expect("a backup has a datastore");
            let backup = repo.backup(&input.stack, service, store, &tools)?;
            job.snapshot = Some(backup.id.clone());
            job.bytes = Some(backup.bytes);
            job.added = Some(backup.added);
            forget(&repo, input, retention, job, false)?;
        }
        JobKind::Prune => {
            let (_, retention) = input.datastore.as_ref().expect("a prune has a datastore");
            forget(&repo, input, retention, job, input.dry_run)?;
        }
        JobKind::Drill | JobKind::Restore => {
            let backup = pick(&repo)?;
            job.snapshot = Some(backup.id.clone());
            let in_place = matches!(input.target, Some(RestoreTarget::InPlace { .. }));
            if in_place || input.to.is_some() {
                let store = match &input.to {
                    Some(to) => to,
                    None => {
                        &input
                            .datastore
                            .as_ref()
                            .expect("a restore has a datastore")
                            .0
                    }
                };
                let started = std::time::Instant::now();
                repo.restore(&backup, store, &tools)?;
                job.rto_ms = Some(started.elapsed().as_millis() as u64);
                job.rpo_s = Some(
                    jiff::Timestamp::now()
                        .duration_since(backup.time)
                        .unsigned_abs()
                        .as_secs(),
                );
            } else {
                let report = wharf_backup::drill_with(&repo, &backup, &tools, |sandbox| {
                    super::sandbox_app::run_all(&input.apps, sandbox)
                })?;
                job.rto_ms = Some(report.rto.as_millis() as u64);
                job.rpo_s = Some(report.rpo.as_secs());
                job.checks = report
                    .checks
                    .iter()
                    .map(|c| JobCheck {
                        name: c.name.clone(),
                        passed: c.passed,
                        expected: c.expected.clone(),
                        found: c.found.clone(),
                    })
                    .collect();
                if !report.passed() {
                    job.state = JobState::Failed;
                    let failed: Vec<String> = report
                        .failures()
                        .map(|c| format!("{}: expected {}, found {}", c.name, c.expected, c.found))
                        .collect();
                    job.error = Some(format!("failed checks: {}", failed.join("; ")));
                }
            }
        }
        JobKind::Verify => {
            repo.check(input.read_data)?;
            let key = repo.verify_key()?;
            job.checks.push(JobCheck {
                name: "structure".into(),
                passed: true,
                expected: "no problem".into(),
                found: "no problem".into(),
            });
            if input.read_data {
                job.checks.push(JobCheck {
                    name: "data".into(),
                    passed: true,
                    expected: "every pack reads and decrypts".into(),
                    found: "every pack reads and decrypts".into(),
                });
            }
            job.checks.push(JobCheck {
                name: "key recovery".into(),
                passed: true,
                expected: "the stored password decrypts the newest backup".into(),
                found: match key.snapshot {
                    Some(id) => format!("decrypted snapshot {id}"),
                    None => "no backup to decrypt yet".into(),
                },
            });
        }
    }
    Ok(())
}

fn forget(
    repo: &wharf_backup::Repo,
    input: &JobInput,
    retention: &wharf_backup::Retention,
    job: &mut Job,
    dry_run: bool,
) -> wharf_backup::Result<()> {
    let service = input.service.as_deref().unwrap_or_default();
    let outcome = repo.forget(
        &input.stack,
        service,
        retention,
        &jiff::Zoned::now(),
        dry_run,
    )?;
    job.forgotten = outcome
        .into_iter()
        .filter(|(_, kept)| !kept)
        .map(|(b, _)| b.id)
        .collect();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn at(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn a_daily_backup_is_ok_pending_overdue_or_failed() {
        let daily: CronSchedule = "0 3 * * *".parse().unwrap();
        let since = at("2026-12-05T10:00:00Z");
        // Nothing was due since backups began: pending, even at the next day's 03:05.
        let (h, _) = health(&daily, None, None, since, at("2026-12-06T03:05:00Z"));
        assert_eq!(h, BackupHealth::Pending, "within the grace after 03:00");
        // Past the grace with no backup: overdue, saying when it was due.
        let (h, why) = health(&daily, None, None, since, at("2026-12-06T03:11:00Z"));
        assert_eq!(h, BackupHealth::Overdue);
        assert!(why.unwrap().contains("2026-12-06T03:00:00Z"));
        // A backup after the due time: ok, until the next one is late.
        let ok = at("2026-12-06T03:01:00Z");
        let (h, _) = health(&daily, Some(ok), None, since, at("2026-12-07T03:09:00Z"));
        assert_eq!(h, BackupHealth::Ok);
        let (h, why) = health(&daily, Some(ok), None, since, at("2026-12-07T03:11:00Z"));
        assert_eq!(h, BackupHealth::Overdue);
        assert!(why.unwrap().contains("last good: 2026-12-06T03:01:00Z"));
        // A failure after the last success is failed, whatever the schedule says.
        let failed = at("2026-12-06T09:00:00Z");
        let (h, why) = health(
            &daily,
            Some(ok),
            Some((failed, "pg_dump: connection refused")),
            since,
            failed + MIN,
        );
        assert_eq!(h, BackupHealth::Failed);
        assert!(why.unwrap().contains("connection refused"));
        // A success after the failure clears it.
        let (h, _) = health(
            &daily,
            Some(failed + MIN),
            Some((failed, "x")),
            since,
            failed + 2 * MIN,
        );
        assert_eq!(h, BackupHealth::Ok);
    }

    fn empty() -> Backups {
        Backups {
            datastores: BTreeMap::new(),
            running: BTreeMap::new(),
            holding: Vec::new(),
            held_by: BTreeMap::new(),
            holds: BTreeMap::new(),
            recent: VecDeque::new(),
            next_id: 1,
            since_ms: 0,
            require: None,
            smoke: Vec::new(),
            repository: None,
            environment: None,
        }
    }

    #[test]
    fn requirements_judge_the_last_good_backup_and_drill() {
        let now = "2026-12-05T12:00:00Z".parse::<jiff::Timestamp>().unwrap();
        let require = Requirements {
            backup_max_age: Some("24h".parse().unwrap()),
            drill_max_age: Some("7d".parse().unwrap()),
            ..Requirements::default()
        };
        let mut db = DatastoreBackups {
            service: "db".into(),
            kind: "postgres".into(),
            schedule: "0 3 * * *".into(),
            health: BackupHealth::Ok,
            reason: None,
            last_success: Some("2026-12-05T03:00:00Z".into()),
            last_failure: None,
            next_due: None,
            last_drill_passed: Some("2026-12-01T04:00:00Z".into()),
            last_drill_failed: None,
            next_drill: None,
            last_bytes: None,
            last_duration_ms: None,
        };
        assert!(unmet_requirements(&require, &db, now).is_empty());
        // A backup two days old, a drill eight days old.
        db.last_success = Some("2026-12-03T11:00:00Z".into());
        db.last_drill_passed = Some("2026-11-27T11:00:00Z".into());
        let unmet = unmet_requirements(&require, &db, now);
        assert_eq!(unmet.len(), 2, "{unmet:?}");
        assert!(
            unmet[0].contains("more than backup_max_age 1d"),
            "{unmet:?}"
        );
        assert!(unmet[1].contains("more than drill_max_age 7d"), "{unmet:?}");
        // A failure after a recent success, and a drill that failed after the last pass.
        db.last_success = Some("2026-12-05T03:00:00Z".into());
        db.last_failure = Some("2026-12-05T09:00:00Z".into());
        db.reason = Some("pg_dump: connection refused".into());
        db.last_drill_passed = Some("2026-12-04T04:00:00Z".into());
        db.last_drill_failed = Some("2026-12-05T04:00:00Z".into());
        let unmet = unmet_requirements(&require, &db, now);
        assert!(
            unmet[0].contains("last backup failed (pg_dump: connection refused)"),
            "{unmet:?}"
        );
        assert!(
            unmet[1].contains("last drill, at 2026-12-05T04:00:00Z, failed"),
            "{unmet:?}"
        );
        // Never backed up, never drilled.
        db.last_success = None;
        db.last_drill_passed = None;
        db.last_drill_failed = None;
        let unmet = unmet_requirements(&require, &db, now);
        assert!(
            unmet[0].contains("db has no successful backup"),
            "{unmet:?}"
        );
        assert!(
            unmet[1].contains("db has no passed restore drill"),
            "{unmet:?}"
        );
    }

    #[test]
    fn overlapping_restores_share_a_hold_and_an_operators_down_takes_it_over() {
        let mut backups = empty();
        backups.hold(1, "api");
        backups.hold(2, "api");
        backups.hold(2, "worker");
        // The first restore ends: api is still held by the second, worker never was by it.
        assert!(backups.unhold(1, vec!["api".into()]).is_empty());
        assert_eq!(backups.held().collect::<Vec<_>>(), ["api", "worker"]);
        // An operator stops worker meanwhile: the second restore does not bring it back.
        backups.release(&["worker".to_owned()]);
        assert_eq!(
            backups.unhold(2, vec!["api".into(), "worker".into()]),
            ["api"]
        );
        assert_eq!(backups.held().count(), 0);
    }

    #[test]
    fn a_restore_target_that_is_the_datastore_itself_is_recognised() {
        use wharf_backup::{Datastore, PgConn};
        let pg = |host: &str, port: u16, db: &str| {
            Datastore::Postgres(PgConn {
                host: host.into(),
                port,
                user: "app".into(),
                password: None,
                dbname: db.into(),
                sslmode: None,
            })
        };
        let prod = pg("127.0.0.1", 5432, "shop");
        assert!(same_server(&prod, &pg("localhost", 5432, "shop")).is_some());
        assert!(same_server(&prod, &pg("127.0.0.1", 5432, "staging")).is_none());
        assert!(same_server(&prod, &pg("10.0.0.7", 5432, "shop")).is_none());
    }

    #[test]
    fn a_frequent_schedule_gets_a_grace_of_half_its_period() {
        let every_minute: CronSchedule = "* * * * *".parse().unwrap();
        let since = at("2026-12-05T10:00:00Z");
        let ok = at("2026-12-05T10:05:00Z");
        assert_eq!(
            health(
                &every_minute,
                Some(ok),
                None,
                since,
                at("2026-12-05T10:06:20Z")
            )
            .0,
            BackupHealth::Ok
        );
        assert_eq!(
            health(
                &every_minute,
                Some(ok),
                None,
                since,
                at("2026-12-05T10:06:40Z")
            )
            .0,
            BackupHealth::Overdue
        );
    }
}
