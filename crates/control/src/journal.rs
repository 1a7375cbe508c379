//! The control plane's memory: instance records in the store and entries in the ledger.
//!
//! Writes never run on the control loop. A dedicated thread, the [`StoreWriter`], owns the
//! only writing connection of the process and applies jobs in the order they were sent; the
//! loop only queues them, so a slow disk or another process holding SQLite's write lock (up to
//! its 10 s busy timeout) delays the records, never a probe, an exit or an API answer. The
//! loop reads through a second connection: in WAL mode readers are not blocked by the writer.
//!
//! Recording never stops the control plane: a failed write is logged and the next one tried,
//! because supervising the services matters more than any single record (and `audit verify`
//! shows whatever is missing from the chain).

use std::path::Path;

use serde_json::Value;
use tokio::sync::oneshot;
use wharf_ledger::{KnownAction, Ledger, NewEntry};
use wharf_store::{InstanceRow, Lease, StateLocation, Store, StoreError};

/// One unit of work for the writer thread.
type Job = Box<dyn FnOnce(&mut Store) + Send>;

/// The handle to the thread that owns the process's writing connection. Cheap to clone.
#[derive(Clone, Debug)]
pub struct StoreWriter {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl StoreWriter {
    /// Starts the writer thread over `store`; it ends when every handle is dropped, after
    /// finishing the jobs already queued.
    pub fn spawn(mut store: Store) -> std::io::Result<StoreWriter> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("wharf-store-writer".to_owned())
            .spawn(move || {
                for job in queue {
                    // One panicking job must not end the thread: every later record would be
                    // lost and every state route would answer 503. Its half-done transaction
                    // (if it left one) is rolled back, so the next job starts clean. A `run`
                    // job's caller sees its reply dropped, as when the writer stops.
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut store)));
                    if let Err(panic) = outcome {
                        let message = panic
                            .downcast_ref::<&str>()
                            .copied()
                            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                            .unwrap_or("(no message)");
                        tracing::error!(panic = message, "a store job panicked; continuing");
                    }
                    if store.in_transaction() {
                        tracing::error!("a store job left a transaction open; rolling it back");
                        if let Err(error) = store.rollback_open_transaction() {
                            tracing::error!(%error, "cannot roll back the open transaction");
                        }
                    }
                }
            })?;
        Ok(StoreWriter { jobs })
    }

    /// A writer with no thread behind it: every job is dropped and `run` answers `None`. For
    /// testing the layers above without a store.
    pub fn disconnected() -> StoreWriter {
        let (jobs, _) = std::sync::mpsc::channel();
        StoreWriter { jobs }
    }

    /// Queues a job without waiting (never blocks).
    pub fn submit(&self, job: impl FnOnce(&mut Store) + Send + 'static) {
        if self.jobs.send(Box::new(job)).is_err() {
            tracing::error!("the store writer has stopped; a record is lost");
        }
    }

    /// Runs a job on the writer thread and waits for its answer (`None`: the writer stopped).
    /// This is how the API runs a use case of `wharf-ops` while the control plane runs.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Store) -> T + Send + 'static,
    ) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.submit(move |store| {
            let _ = reply.send(job(store));
        });
        answer.await.ok()
    }
}

pub struct Journal {
    /// The loop's reading connection.
    reader: Store,
    writer: StoreWriter,
    actor: String,
    /// While the loop handles an API command: who called, the actor of the entries recorded
    /// meanwhile (the change is theirs).
    acting: Option<String>,
    /// Row changes made while handling the current event, committed together with the next
    /// ledger entry recorded (so a change and its evidence are one transaction), or alone by
    /// [`Journal::commit`] at the end of the event.
    pending: Vec<Write>,
}

/// A row change the control plane makes beside its ledger entries.
#[derive(Debug, Clone)]
enum Write {
    SaveInstance(InstanceRow),
    RemoveInstance(String, u32),
    SaveRollout(wharf_store::RolloutRow),
    SaveDeployment(String, String),
    Health(String, String, Option<String>),
    /// dedup key, rule, page JSON, opened at
    OpenAlertPage(String, String, String, String),
    /// dedup key, page JSON, resolved at
    ResolveAlertPage(String, String, String),
    /// id, receiver, notice JSON
    QueueNotice(u64, String, String),
    /// id, attempts, why it was given up (`None`: delivered)
    FinishNotice(u64, u32, Option<String>),
    SaveBackupJob(wharf_store::BackupJobRow),
    SaveRunbookRun(wharf_store::RunbookRunRow),
    SaveDeployRequest(u64, String, String, String),
}

impl Write {
    fn apply(&self, store: &mut Store) -> Result<(), StoreError> {
        match self {
            Write::SaveInstance(row) => store.save_instance(row),
            Write::RemoveInstance(service, ordinal) => store.remove_instance(service, *ordinal),
            Write::SaveRollout(row) => store.save_rollout(row),
            Write::SaveDeployment(service, state) => store.save_deployment(service, state),
            Write::Health(target, state, reason) => {
                store.add_health_event(target, state, reason.as_deref())
            }
            Write::OpenAlertPage(key, rule, page, at) => store.save_alert_page(key, rule, page, at),
            Write::ResolveAlertPage(key, page, at) => store.resolve_alert_page(key, page, at),
            Write::QueueNotice(id, receiver, notice) => {
                store.add_alert_notice(*id, receiver, notice)
            }
            Write::FinishNotice(id, attempts, gave_up) => {
                store.finish_alert_notice(*id, *attempts, gave_up.as_deref())
            }
            Write::SaveBackupJob(row) => store.save_backup_job(row),
            Write::SaveRunbookRun(row) => store.save_runbook_run(row),
            Write::SaveDeployRequest(id, service, state, request) => {
                store.save_deploy_request(*id, service, state, request)
            }
        }
    }
}

/// Why a change and its entry did not commit.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ledger(wharf_ledger::LedgerError),
}

/// A write refused by the fencing token: another replica leads, and its state must not get
/// this one's changes piecemeal either, so nothing is retried (the store recorded the attempt
/// in `fenced_writes`; the replica exits at its next lease renewal).
fn fenced(error: &StoreError) {
    tracing::error!(%error, "write refused: this replica no longer holds the control lease");
}

/// Applies `writes` one by one, each on its own: the fallback when they could not commit with
/// their entry, because losing track of a running process is worse than a missing entry (which
/// `audit verify` cannot show, so it is logged as an error).
fn apply_alone(store: &mut Store, writes: &[Write]) {
    for write in writes {
        if let Err(error) = write.apply(store) {
            tracing::error!(%error, ?write, "could not record a change of the control plane");
        }
    }
}

impl Journal {
    /// Opens the state database twice: a writing connection handed to a new writer thread, and
    /// a reading one for the loop. The state is where `WHARF_STATE_DSN` says, else
    /// `state.db` in `state_dir` (see `StateLocation::for_state_dir`).
    pub fn open(state_dir: &Path, actor: String) -> Result<Self, StoreError> {
        Self::open_fenced(state_dir, actor, None)
    }

    /// [`Journal::open`] for a replica that leads by `lease`: every write of its writer is
    /// fenced by the lease's token, so once another replica has taken the lease over, this
    /// one's writes are refused (and recorded in `fenced_writes`) instead of interleaving.
    pub fn open_fenced(
        state_dir: &Path,
        actor: String,
        lease: Option<&Lease>,
    ) -> Result<Self, StoreError> {
        let location = StateLocation::for_state_dir(state_dir)?;
        let mut writing = Store::open_location_for_writing(&location)?;
        if let Some(lease) = lease {
            writing.fence(lease);
        }
        let reader = writing.open_reader()?;
        let writer = StoreWriter::spawn(writing).map_err(|source| StoreError::Io {
            path: state_dir.to_owned(),
            action: "cannot start the store writer thread",
            source,
        })?;
        Ok(Journal {
            reader,
            writer,
            actor,
            acting: None,
            pending: Vec::new(),
        })
    }

    /// The writer, for the API's use cases.
    pub fn writer(&self) -> StoreWriter {
        self.writer.clone()
    }

    /// Queues one ledger entry, in one transaction with the row changes made since the last
    /// entry or commit (the change it is evidence of).
    pub fn record(&mut self, action: KnownAction, target: &str, details: Value) {
        let actor = self.acting().to_owned();
        self.record_by(&actor, action, target, details);
    }

    /// Like [`Journal::record`], naming `actor` as who acted (an operator's request through
    /// the API) instead of the control plane's own actor.
    pub fn record_by(&mut self, actor: &str, action: KnownAction, target: &str, details: Value) {
        let writes = std::mem::take(&mut self.pending);
        let now = jiff::Timestamp::now();
        let entry = match NewEntry::new(now, actor, action.into(), target, details) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(%error, %action, target, "invalid ledger entry");
                self.writer.submit(move |store| apply_alone(store, &writes));
                return;
            }
        };
        let target = target.to_owned();
        self.writer.submit(move |store| {
            let together = store.atomically_as(action.as_str(), |store| {
                for write in &writes {
                    write.apply(store)?;
                }
                Ledger::new(&mut *store)
                    .append(entry)
                    .map(drop)
                    .map_err(RecordError::Ledger)
            });
            match together {
                Ok(()) => {}
                Err(RecordError::Store(error @ StoreError::Fenced { .. })) => fenced(&error),
                Err(error) => {
                    tracing::error!(%error, %action, target, "could not append to the ledger; the change is recorded without its entry");
                    apply_alone(store, &writes);
                }
            }
        });
    }

    /// Commits the row changes no entry followed (at the end of each event).
    pub fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let writes = std::mem::take(&mut self.pending);
        self.writer.submit(move |store| {
            let together = store.atomically_as("row changes", |store| {
                writes.iter().try_for_each(|write| write.apply(store))
            });
            match together {
                Ok(()) => {}
                Err(error @ StoreError::Fenced { .. }) => fenced(&error),
                Err(error) => {
                    tracing::error!(%error, "could not commit the control plane's changes together");
                    apply_alone(store, &writes);
                }
            }
        });
    }

    pub fn save_instance(&mut self, row: &InstanceRow) {
        self.pending.push(Write::SaveInstance(row.clone()));
    }

    pub fn remove_instance(&mut self, service: &str, ordinal: u32) {
        self.pending
            .push(Write::RemoveInstance(service.to_owned(), ordinal));
    }

    /// Adds a state change to the bounded health history in the store.
    pub fn record_health(&mut self, target: &str, state: &str, reason: Option<&str>) {
        self.pending.push(Write::Health(
            target.to_owned(),
            state.to_owned(),
            reason.map(str::to_owned),
        ));
    }

    pub fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.reader.instances()
    }
}

impl Journal {
    pub fn save_rollout(&mut self, row: &wharf_store::RolloutRow) {
        self.pending.push(Write::SaveRollout(row.clone()));
    }

    pub fn rollouts(&self) -> Result<Vec<wharf_store::RolloutRow>, StoreError> {
        self.reader.rollouts()
    }

    pub fn save_deployment(&mut self, service: &str, state: &str) {
        self.pending
            .push(Write::SaveDeployment(service.to_owned(), state.to_owned()));
    }

    /// Read once, when the control plane starts (before it has written any).
    pub fn deployment(&self, service: &str) -> Option<String> {
        self.reader.deployment(service).unwrap_or_else(|error| {
            tracing::error!(%error, service, "could not read the deployment");
            None
        })
    }

    /// Waits until every change made so far has been applied (the end of `run`, tests).
    pub async fn flush(&mut self) {
        self.commit();
        self.writer.run(|_| ()).await;
    }
}

impl Journal {
    /// Records a page as open; committed with the next entry (its `alert.trigger`).
    pub fn open_alert_page(&mut self, dedup_key: &str, rule: &str, page: &str, opened_at: &str) {
        self.pending.push(Write::OpenAlertPage(
            dedup_key.to_owned(),
            rule.to_owned(),
            page.to_owned(),
            opened_at.to_owned(),
        ));
    }

    /// Records a page as resolved; committed with the next entry (its `alert.resolve`).
    pub fn resolve_alert_page(&mut self, dedup_key: &str, page: &str, resolved_at: &str) {
        self.pending.push(Write::ResolveAlertPage(
            dedup_key.to_owned(),
            page.to_owned(),
            resolved_at.to_owned(),
        ));
    }

    /// Queues a notice in the outbox (with the entry that explains it).
    pub fn queue_notice(&mut self, id: u64, receiver: &str, notice: &str) {
        self.pending.push(Write::QueueNotice(
            id,
            receiver.to_owned(),
            notice.to_owned(),
        ));
    }

    /// A notice was delivered, or given up on.
    pub fn finish_notice(&mut self, id: u64, attempts: u32, gave_up: Option<&str>) {
        self.pending.push(Write::FinishNotice(
            id,
            attempts,
            gave_up.map(str::to_owned),
        ));
    }

    /// Records a backup job or its outcome (with its entry, when it ended).
    pub fn save_backup_job(&mut self, row: &wharf_store::BackupJobRow) {
        self.pending.push(Write::SaveBackupJob(row.clone()));
    }

    /// Saves a deploy request (with its `approval.*` entry).
    pub fn save_deploy_request(&mut self, id: u64, service: &str, state: &str, request: &str) {
        self.pending.push(Write::SaveDeployRequest(
            id,
            service.to_owned(),
            state.to_owned(),
            request.to_owned(),
        ));
    }

    /// Records a runbook run's progress (with its entry, when it changed state or a step).
    pub fn save_runbook_run(&mut self, row: &wharf_store::RunbookRunRow) {
        self.pending.push(Write::SaveRunbookRun(row.clone()));
    }

    /// Who the ledger's entries name as the actor.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Who the entries recorded now name: the caller of the command being handled, else the
    /// control plane.
    pub fn acting(&self) -> &str {
        self.acting.as_deref().unwrap_or(&self.actor)
    }

    /// Names `caller` as the actor of what is recorded until the next call (`None`: the
    /// control plane itself again); answers who acted before.
    pub fn act_as(&mut self, caller: Option<String>) -> Option<String> {
        std::mem::replace(&mut self.acting, caller)
    }

    /// The loop's reading connection (read-only), for the secrets and config overrides read
    /// at instance start.
    pub fn store(&self) -> &Store {
        &self.reader
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A deposed leader's journal (its lease taken over): the instance row and its entry are
    /// refused together, not applied piecemeal afterwards, and the refusal is recorded once,
    /// named by the entry's action and the stale token.
    #[tokio::test]
    async fn a_fenced_journal_writes_nothing_and_its_refusal_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut other = Store::open(dir.path()).unwrap();
        // A lease of zero length has run out at once: the pause of a leader past its lease.
        let old = other
            .try_acquire("control", "old", Duration::ZERO)
            .unwrap()
            .unwrap();
        let mut journal = Journal::open_fenced(dir.path(), "old".into(), Some(&old)).unwrap();
        let new = other
            .try_acquire("control", "new", Duration::from_secs(60))
            .unwrap()
            .unwrap();
        journal.save_instance(&InstanceRow {
            service: "api".into(),
            index: 1,
            version: "1.0".into(),
            handle: "{}".into(),
            port: None,
            started_at: "2026-01-01T00:00:00Z".into(),
            restarts: 0,
            spec_hash: "x".into(),
        });
        journal.record(KnownAction::InstanceStart, "api/1", serde_json::json!({}));
        journal.writer().run(|_| ()).await.unwrap();

        assert_eq!(other.instances().unwrap(), []);
        assert_eq!(other.ledger_entries(&Default::default()).unwrap(), []);
        let refused = other.fenced_writes().unwrap();
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(
            (refused[0].what.as_str(), refused[0].token, refused[0].held),
            ("instance.start", old.token.value(), new.token.value())
        );
    }
}
