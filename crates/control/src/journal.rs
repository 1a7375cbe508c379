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
use wharf_store::{InstanceRow, Store, StoreError};

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
}

impl Journal {
    /// Opens the state database twice: a writing connection handed to a new writer thread, and
    /// a reading one for the loop.
    pub fn open(state_dir: &Path, actor: String) -> Result<Self, StoreError> {
        let writing = Store::open(state_dir)?;
        let reader = writing.open_another()?;
        let writer = StoreWriter::spawn(writing).map_err(|source| StoreError::Io {
            path: state_dir.to_owned(),
            action: "cannot start the store writer thread",
            source,
        })?;
        Ok(Journal {
            reader,
            writer,
            actor,
        })
    }

    /// The writer, for the API's use cases.
    pub fn writer(&self) -> StoreWriter {
        self.writer.clone()
    }

    /// Queues one ledger entry.
    pub fn record(&mut self, action: KnownAction, target: &str, details: Value) {
        let now = jiff::Timestamp::now();
        let entry = match NewEntry::new(now, &self.actor, action.into(), target, details) {
            Ok(entry) => entry,
            Err(error) => {
                tracing::error!(%error, %action, target, "invalid ledger entry");
                return;
            }
        };
        let target = target.to_owned();
        self.writer.submit(move |store| {
            if let Err(error) = Ledger::new(store).append(entry) {
                tracing::error!(%error, target, "could not append to the ledger");
            }
        });
    }

    pub fn save_instance(&mut self, row: &InstanceRow) {
        let row = row.clone();
        self.writer.submit(move |store| {
            if let Err(error) = store.save_instance(&row) {
                tracing::error!(%error, service = row.service, "could not record the instance");
            }
        });
    }

    pub fn remove_instance(&mut self, service: &str, ordinal: u32) {
        let service = service.to_owned();
        self.writer.submit(move |store| {
            if let Err(error) = store.remove_instance(&service, ordinal) {
                tracing::error!(%error, service, ordinal, "could not forget the instance");
            }
        });
    }

    /// Adds a state change to the bounded health history in the store.
    pub fn record_health(&mut self, target: &str, state: &str, reason: Option<&str>) {
        let (target, state) = (target.to_owned(), state.to_owned());
        let reason = reason.map(str::to_owned);
        self.writer.submit(move |store| {
            if let Err(error) = store.add_health_event(&target, &state, reason.as_deref()) {
                tracing::error!(%error, target, "could not record the health history");
            }
        });
    }

    pub fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.reader.instances()
    }
}

impl Journal {
    pub fn save_rollout(&mut self, row: &wharf_store::RolloutRow) {
        let row = row.clone();
        self.writer.submit(move |store| {
            if let Err(error) = store.save_rollout(&row) {
                tracing::error!(%error, service = row.service, "could not save the rollout");
            }
        });
    }

    pub fn rollouts(&self) -> Result<Vec<wharf_store::RolloutRow>, StoreError> {
        self.reader.rollouts()
    }

    pub fn save_deployment(&mut self, service: &str, state: &str) {
        let (service, state) = (service.to_owned(), state.to_owned());
        self.writer.submit(move |store| {
            if let Err(error) = store.save_deployment(&service, &state) {
                tracing::error!(%error, service, "could not save the deployment");
            }
        });
    }

    /// Read once, when the control plane starts (before it has written any).
    pub fn deployment(&self, service: &str) -> Option<String> {
        self.reader.deployment(service).unwrap_or_else(|error| {
            tracing::error!(%error, service, "could not read the deployment");
            None
        })
    }

    /// Waits until every job queued so far has been applied (the end of `run`, tests).
    pub async fn flush(&self) {
        self.writer.run(|_| ()).await;
    }
}

impl Journal {
    /// The loop's reading connection, for the secrets and config overrides read at instance
    /// start.
    pub fn store(&self) -> &Store {
        &self.reader
    }

    /// Only for unlocking secrets the first time a reloaded manifest needs them, which may
    /// write the key check value once.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.reader
    }
}
