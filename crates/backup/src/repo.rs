//! The backup repository: a restic repository (format v2: content-defined chunking, dedup,
//! zstd compression, AES-256-CTR + Poly1305 encryption) written and read through
//! `rustic_core`, so `restic -r DIR snapshots|restore|check` work on it without wharf.
//!
//! A wharf backup is one snapshot tagged `wharf`, `stack=S`, `service=N`, `kind=K`, holding
//! `S/N/data/…` (the engine's dump, RDB, database copy or files) and `S/N/record.json` (what a
//! drill checks). The repository lives in a local folder or on S3-compatible storage
//! ([`RepoLocation`], through `rustic_backend`'s OpenDAL S3 service); restic reads both.

use std::io::Write;
use std::path::Path;

use rustic_core::repofile::{BlobType, IndexFile, SnapshotFile};
use rustic_core::{
    CheckOptions, ConfigOptions, Credentials, KeyOptions, LocalDestination, LsOptions, OpenStatus,
    Repository, RepositoryOptions, RestoreOptions, RusticError, SnapshotOptions,
};
use wharf_manifest::model::DatastoreKind;

use crate::archive::{Archiver, Known};
use crate::capture::Capture;
use crate::datastore::Datastore;
use crate::drivers::{self, Feed};
use crate::error::{BackupError, Result};
use crate::location::{RepoLocation, repo_error};
use crate::record::Record;
use crate::secret::Secret;
use crate::tools::Tools;

/// An open repository.
pub struct Repo {
    repo: Repository<OpenStatus>,
    at: RepoLocation,
    location: String,
}

impl std::fmt::Debug for Repo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repo")
            .field("location", &self.location)
            .finish()
    }
}

/// One wharf backup in the repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backup {
    /// The restic snapshot id (hex).
    pub id: String,
    pub time: jiff::Timestamp,
    pub stack: String,
    pub service: String,
    pub kind: DatastoreKind,
    /// Bytes of the engine's output (before dedup and compression).
    pub bytes: u64,
    /// New data this backup added to the repository (after dedup, before compression).
    pub added: u64,
}

/// What the key-recovery check proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCheck {
    /// The snapshot whose tree and record were decrypted with the stored password.
    pub snapshot: Option<String>,
}

/// An unopened repository at `at`, and the name errors give it (never a credential).
fn repository(at: &RepoLocation) -> Result<(Repository<()>, String)> {
    let backends = at.backends().map_err(|e| repo_error(at, &e))?;
    // No local cache: the repository is the one source of truth a drill reads.
    let options = RepositoryOptions::default().no_cache(true);
    let repo = Repository::new(&options, &backends).map_err(|e| repo_error(at, &e))?;
    Ok((repo, at.to_string()))
}

fn prefix(stack: &str, service: &str) -> String {
    format!("{stack}/{service}")
}

fn data_file(kind: DatastoreKind) -> Option<&'static str> {
    match kind {
        DatastoreKind::Postgres => Some(drivers::postgres::FILE),
        DatastoreKind::Mariadb => Some(drivers::mariadb::FILE),
        DatastoreKind::Redis => Some(drivers::redis::FILE),
        DatastoreKind::Sqlite => Some(drivers::sqlite::FILE),
        DatastoreKind::Directory => None,
    }
}

fn kind_from_tag(tag: &str) -> Option<DatastoreKind> {
    Some(match tag {
        "postgres" => DatastoreKind::Postgres,
        "mariadb" => DatastoreKind::Mariadb,
        "redis" => DatastoreKind::Redis,
        "sqlite" => DatastoreKind::Sqlite,
        "directory" => DatastoreKind::Directory,
        _ => return None,
    })
}

impl Repo {
    /// Creates a new repository in `dir` (which must not hold one) with `password`.
    pub fn init(dir: &Path, password: &Secret) -> Result<Repo> {
        Repo::init_at(&RepoLocation::Local(dir.to_owned()), password)
    }

    /// Opens the repository in `dir`; a wrong password is [`BackupError::WrongPassword`].
    pub fn open(dir: &Path, password: &Secret) -> Result<Repo> {
        Repo::open_at(&RepoLocation::Local(dir.to_owned()), password)
    }

    /// Opens the repository, creating it when `dir` holds none yet.
    pub fn open_or_init(dir: &Path, password: &Secret) -> Result<Repo> {
        Repo::open_or_init_at(&RepoLocation::Local(dir.to_owned()), password)
    }

    /// Creates a new repository at `at` (which must not hold one) with `password`. An S3
    /// bucket must exist already ([`BackupError::NoSuchBucket`] otherwise).
    pub fn init_at(at: &RepoLocation, password: &Secret) -> Result<Repo> {
        let (repo, location) = repository(at)?;
        let repo = repo
            .init(
                &Credentials::password(password.expose()),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(|e| repo_error(at, &e))?;
        Ok(Repo {
            repo,
            at: at.clone(),
            location,
        })
    }

    /// Opens the repository at `at`; a wrong password is [`BackupError::WrongPassword`],
    /// S3 keys the server refuses are [`BackupError::AccessDenied`].
    pub fn open_at(at: &RepoLocation, password: &Secret) -> Result<Repo> {
        let (repo, location) = repository(at)?;
        let repo = repo
            .open(&Credentials::password(password.expose()))
            .map_err(
                |e| match e.is_incorrect_password().then(|| at.listing_refused()) {
                    Some(Some(refused)) => refused,
                    _ => repo_error(at, &e),
                },
            )?;
        Ok(Repo {
            repo,
            at: at.clone(),
            location,
        })
    }

    /// Opens the repository at `at`, creating it when none is there yet (a folder without a
    /// `config` file; a bucket prefix without a `config` object).
    pub fn open_or_init_at(at: &RepoLocation, password: &Secret) -> Result<Repo> {
        let exists = match at {
            RepoLocation::Local(dir) => dir.join("config").exists(),
            RepoLocation::S3(_) => {
                let (repo, _) = repository(at)?;
                repo.config_id().map_err(|e| repo_error(at, &e))?.is_some()
            }
        };
        if exists {
            Repo::open_at(at, password)
        } else {
            Repo::init_at(at, password)
        }
    }

    /// Where this repository lives.
    pub fn location(&self) -> &RepoLocation {
        &self.at
    }

    /// A newly opened handle: rustic's open repository is consumed by indexing, and a fresh
    /// index sees the backups written since. Opened with the master key already decrypted
    /// (not the password, whose key derivation is slow on purpose).
    fn reopen(&self) -> Result<Repository<OpenStatus>> {
        let (repo, _) = repository(&self.at)?;
        repo.open(&Credentials::Masterkey(self.repo.key()))
            .map_err(|e| repo_error(&self.at, &e))
    }

    fn fail(&self, error: &RusticError) -> BackupError {
        repo_error(&self.at, error)
    }

    /// Backs up `store` (service `service` of stack `stack`): streams the engine's output into
    /// a new snapshot with the record beside it. A backup whose tool or record failed is
    /// removed again, so no half-written snapshot is ever listed as a backup.
    pub fn backup(
        &self,
        stack: &str,
        service: &str,
        store: &Datastore,
        tools: &Tools,
    ) -> Result<Backup> {
        let capture: Capture = match store {
            Datastore::Postgres(conn) => drivers::postgres::capture(conn, tools)?,
            Datastore::Mariadb(conn) => drivers::mariadb::capture(conn, tools)?,
            Datastore::Redis(conn) => drivers::redis::capture(conn, tools)?,
            Datastore::Sqlite(path) => drivers::sqlite::capture(path)?,
            Datastore::Directory(path) => drivers::directory::capture(path)?,
        };
        let kind = store.kind();
        let prefix = prefix(stack, service);
        let tags = format!(
            "wharf,stack={stack},service={service},kind={}",
            crate::kind_name(kind)
        );
        let snap = SnapshotOptions::default()
            .add_tags(&tags)
            .and_then(|o| o.to_snapshot())
            .map_err(|e| self.fail(&e))?;
        let repo = &self.repo;
        let backends = self.at.backends().map_err(|e| self.fail(&e))?;
        let be = backends.repository();
        let key = repo.key();
        let known = self.known_data(repo)?;
        let archiver = Archiver::new(&*be, &key, repo.config(), known, &self.location)?;
        let (saved, _record) = archiver.archive(&prefix, capture, snap)?;
        let backup = to_backup(&saved).ok_or_else(|| BackupError::BadSnapshot {
            id: saved.id.to_string(),
            detail: "not tagged as a wharf backup".into(),
        })?;
        tracing::info!(stack, service, snapshot = %backup.id, bytes = backup.bytes, "backup saved");
        Ok(backup)
    }

    /// The blobs the repository's index lists.
    fn known_data(&self, repo: &Repository<OpenStatus>) -> Result<Known> {
        let mut known = Known::default();
        let files = repo
            .stream_files::<IndexFile>()
            .map_err(|e| self.fail(&e))?;
        for file in files {
            let (_, index) = file.map_err(|e| self.fail(&e))?;
            for blob in index.packs.iter().flat_map(|p| &p.blobs) {
                match blob.tpe {
                    BlobType::Data => {
                        known.data.insert(*blob.id);
                        known.stored_bytes += u64::from(blob.location.length);
                    }
                    BlobType::Tree => {
                        known.trees.insert(*blob.id);
                    }
                }
            }
        }
        Ok(known)
    }

    /// Every wharf backup, oldest first; only those of `stack` / `service` when given.
    pub fn backups(&self, stack: Option<&str>, service: Option<&str>) -> Result<Vec<Backup>> {
        let mut backups: Vec<Backup> = self
            .repo
            .get_all_snapshots()
            .map_err(|e| self.fail(&e))?
            .iter()
            .filter_map(to_backup)
            .filter(|b| stack.is_none_or(|s| s == b.stack))
            .filter(|b| service.is_none_or(|s| s == b.service))
            .collect();
        backups.sort_by_key(|b| b.time);
        Ok(backups)
    }

    fn snapshot(&self, id: &str) -> Result<SnapshotFile> {
        self.repo
            .get_snapshot_from_str(id, |_| true)
            .map_err(|_| BackupError::NoSuchSnapshot(id.to_owned()))
    }

    /// The record stored with a backup.
    pub fn record(&self, backup: &Backup) -> Result<Record> {
        let mut bytes = Vec::new();
        let path = format!("{}/record.json", prefix(&backup.stack, &backup.service));
        self.dump(backup, &path, &mut bytes)?;
        serde_json::from_slice(&bytes).map_err(|e| BackupError::BadSnapshot {
            id: backup.id.clone(),
            detail: format!("record.json: {e}"),
        })
    }

    /// Writes one file of a backup into `out` (streamed blob by blob).
    fn dump(&self, backup: &Backup, path: &str, out: &mut dyn Write) -> Result<()> {
        let snap = self.snapshot(&backup.id)?;
        let indexed = self.reopen()?.to_indexed().map_err(|e| self.fail(&e))?;
        let node = indexed
            .node_from_snapshot_and_path(&snap, path)
            .map_err(|e| BackupError::BadSnapshot {
                id: backup.id.clone(),
                detail: format!("{path}: {}", e.display_log().lines().next().unwrap_or("")),
            })?;
        unpanic(&self.location, || indexed.dump(&node, &mut &mut *out))?.map_err(|e| self.fail(&e))
    }

    /// Restores `backup` into `into`, which must be a datastore of the backup's kind.
    /// PostgreSQL and MariaDB: the backed-up tables are dropped and recreated; Redis: the
    /// server's whole dataset is replaced; SQLite: the database is overwritten through the
    /// backup API; directory: the folder is made equal to the backup (extra files removed).
    pub fn restore(&self, backup: &Backup, into: &Datastore, tools: &Tools) -> Result<()> {
        if into.kind() != backup.kind {
            return Err(BackupError::Restore(format!(
                "backup {} is of a {} datastore, the target is {}",
                backup.id,
                crate::kind_name(backup.kind),
                crate::kind_name(into.kind())
            )));
        }
        let prefix = prefix(&backup.stack, &backup.service);
        let path = data_file(backup.kind).map(|file| format!("{prefix}/data/{file}"));
        let mut feed = |out: &mut dyn Write| -> Result<()> {
            self.dump(backup, path.as_deref().unwrap_or_default(), out)
        };
        let feed: Feed<'_> = &mut feed;
        match into {
            Datastore::Postgres(conn) => drivers::postgres::restore(conn, tools, feed),
            Datastore::Mariadb(conn) => drivers::mariadb::restore(conn, tools, feed),
            Datastore::Sqlite(path) => drivers::sqlite::restore(path, feed),
            Datastore::Redis(conn) => {
                let sandbox = crate::sandbox::Sandbox::start_redis(tools, Some(feed))?;
                drivers::redis::replicate_from(conn, sandbox.port())
            }
            Datastore::Directory(target) => {
                self.restore_tree(backup, &format!("{prefix}/data"), target)
            }
        }
    }

    fn restore_tree(&self, backup: &Backup, path: &str, target: &Path) -> Result<()> {
        let snap = self.snapshot(&backup.id)?;
        let indexed = self.reopen()?.to_indexed().map_err(|e| self.fail(&e))?;
        let node = indexed
            .node_from_snapshot_and_path(&snap, path)
            .map_err(|e| self.fail(&e))?;
        let ls = indexed
            .ls(&node, &LsOptions::default())
            .map_err(|e| self.fail(&e))?;
        std::fs::create_dir_all(target).map_err(|e| BackupError::io(target, e))?;
        let dest = LocalDestination::new(&format!("{}/", target.display()), true, false)
            .map_err(|e| self.fail(&e))?;
        let options = RestoreOptions::default().delete(true);
        let plan = indexed
            .prepare_restore(&options, ls.clone(), &dest, false)
            .map_err(|e| self.fail(&e))?;
        unpanic(&self.location, || {
            indexed.restore(plan, &options, ls, &dest)
        })?
        .map_err(|e| self.fail(&e))
    }

    /// `restic check` (with `--read-data` when asked): every problem found, named.
    pub fn check(&self, read_data: bool) -> Result<()> {
        let results = self
            .repo
            .check(CheckOptions::default().read_data(read_data))
            .map_err(|e| self.fail(&e))?;
        let problems: Vec<String> = results
            .0
            .iter()
            .map(|(level, error)| format!("{level:?}: {error}"))
            .collect();
        if results.is_ok().is_ok() && problems.iter().all(|p| p.starts_with("Warn")) {
            return Ok(());
        }
        Err(BackupError::Repository {
            location: self.location.clone(),
            detail: problems.join("; "),
        })
    }

    /// The key-recovery check: the password this repository was opened with decrypts the
    /// newest backup's tree and record (all of its data, with `check(true)`).
    pub fn verify_key(&self) -> Result<KeyCheck> {
        let newest = self.backups(None, None)?.pop();
        if let Some(backup) = &newest {
            self.record(backup)?;
        }
        Ok(KeyCheck {
            snapshot: newest.map(|b| b.id),
        })
    }

    /// Deletes the snapshots of `stack`/`service` that `policy` does not keep (restic's
    /// `forget`); with `dry_run` only says which. Returns `(backup, kept)` newest first. The
    /// data they alone held stays until a prune.
    pub fn forget(
        &self,
        stack: &str,
        service: &str,
        policy: &crate::retention::Retention,
        now: &jiff::Zoned,
        dry_run: bool,
    ) -> Result<Vec<(Backup, bool)>> {
        let backups = self.backups(Some(stack), Some(service))?;
        let times: Vec<jiff::Timestamp> = backups.iter().map(|b| b.time).collect();
        let keep = crate::retention::keep(policy, &times, now)?;
        let mut outcome: Vec<(Backup, bool)> = backups.into_iter().zip(keep).collect();
        if !dry_run {
            let ids: Vec<_> = outcome
                .iter()
                .filter(|(_, kept)| !kept)
                .filter_map(|(b, _)| self.snapshot(&b.id).ok().map(|s| s.id))
                .collect();
            self.repo
                .delete_snapshots(&ids)
                .map_err(|e| self.fail(&e))?;
        }
        outcome.reverse();
        Ok(outcome)
    }

    /// Total bytes of this repository's packs, index, snapshots and keys (all but the small
    /// `config` file), as the storage lists them: a local folder or an S3 prefix alike.
    pub fn stored_bytes(&self) -> Result<u64> {
        let infos = self.repo.infos_files().map_err(|e| self.fail(&e))?;
        Ok(infos.repo.iter().map(|info| info.size).sum())
    }

    /// Total bytes of a local repository's files (packs, index, snapshots, keys).
    pub fn size(dir: &Path) -> u64 {
        walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

/// rustic_core 0.13 unwraps a failed blob decryption inside its restore threads (a damaged
/// pack): the panic becomes an error naming the damage instead of ending the caller.
fn unpanic<T>(location: &str, run: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        let reason = text
            .split("guidance: \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("reading the repository failed");
        BackupError::Repository {
            location: location.to_owned(),
            detail: format!("damaged data: {reason} (run a check with read-data to find the pack)"),
        }
    })
}

fn to_backup(snap: &SnapshotFile) -> Option<Backup> {
    let tags: Vec<String> = snap.tags.iter().cloned().collect();
    if !tags.iter().any(|t| t == "wharf") {
        return None;
    }
    let tag = |key: &str| {
        tags.iter()
            .find_map(|t| t.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
    };
    let summary = snap.summary.as_ref();
    Some(Backup {
        id: snap.id.to_string(),
        time: snap.time.timestamp(),
        stack: tag("stack")?,
        service: tag("service")?,
        kind: kind_from_tag(&tag("kind")?)?,
        bytes: summary.map_or(0, |s| s.total_bytes_processed),
        added: summary.map_or(0, |s| s.data_added),
    })
}
