//! Schema migrations, applied in order: [`MIGRATIONS`] for SQLite (`PRAGMA user_version`
//! records how many have run), [`PG_MIGRATIONS`] for PostgreSQL (`wharf_schema` records it).
//! Step `i` of each list makes the same tables, so a schema version means the same on both.
//!
//! Later capabilities add tables by appending a step to both lists; never edit a released step.
//!
//! A step may read `temp.migration_env` (one row, filled by the store before the steps run):
//! `run_dir` is the state directory's `run` folder as text, for steps that rebuild paths the
//! control plane derives from it.

/// Migration steps: step `i` moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the audit ledger and a small key/value table.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    -- One row per entry; the columns are exactly what the canonical JSON leaf is built
    -- from, so verification recomputes every leaf from them.
    CREATE TABLE ledger_entries (
        seq     INTEGER PRIMARY KEY,
        time    TEXT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX ledger_entries_action ON ledger_entries (action);
    CREATE INDEX ledger_entries_target ON ledger_entries (target);
    -- Every complete subtree (2^level leaves from leaf idx << level): O(log n) proofs.
    CREATE TABLE ledger_nodes (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    -- Signed checkpoint notes, oldest first; size is a copy for queries, the note is truth.
    CREATE TABLE ledger_checkpoints (
        id   INTEGER PRIMARY KEY AUTOINCREMENT,
        size INTEGER NOT NULL,
        note TEXT NOT NULL
    );",
    // 2: the instances the control plane started, so a restarted control plane re-adopts
    // them (pid + start time identify a process; a pid alone can be reused).
    "CREATE TABLE instances (
        service         TEXT NOT NULL,
        idx             INTEGER NOT NULL,
        version         TEXT NOT NULL,
        pid             INTEGER NOT NULL,
        start_time      INTEGER NOT NULL,
        shim_pid        INTEGER NOT NULL,
        shim_start_time INTEGER NOT NULL,
        port            INTEGER,
        started_at      TEXT NOT NULL,
        restarts        INTEGER NOT NULL,
        spec_hash       TEXT NOT NULL,
        PRIMARY KEY (service, idx)
    ) WITHOUT ROWID;",
    // 3: recent health transitions of services, kept bounded (the ledger keeps them all).
    "CREATE TABLE health_history (
        id     INTEGER PRIMARY KEY AUTOINCREMENT,
        time   TEXT NOT NULL,
        target TEXT NOT NULL,
        state  TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX health_history_target ON health_history (target, id);",
    // 4: per service, the latest rollout (the state machine and what the control plane keeps
    // beside it, as JSON written after every transition) and the deployed versions.
    "CREATE TABLE rollouts (
        service    TEXT PRIMARY KEY,
        id         INTEGER NOT NULL,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE deployments (
        service    TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    ) WITHOUT ROWID;",
    // 5: secret versions (values only as ciphertext under a wrapped per-version data key;
    // the store never sees a plaintext) and the history of configuration overrides.
    "CREATE TABLE secret_versions (
        name        TEXT NOT NULL,
        version     INTEGER NOT NULL,
        created_at  TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT,
        origin      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        wrapped_key BLOB NOT NULL,
        key_nonce   BLOB NOT NULL,
        nonce       BLOB NOT NULL,
        ciphertext  BLOB NOT NULL,
        PRIMARY KEY (name, version)
    ) WITHOUT ROWID;
    -- changes: a JSON object, key -> string (set) or null (unset).
    CREATE TABLE config_revisions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        service    TEXT NOT NULL,
        changes    TEXT NOT NULL,
        actor      TEXT NOT NULL,
        reason     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX config_revisions_service ON config_revisions (service, id);",
    // 6: an instance is found again through its driver's opaque handle (JSON text), not pid
    // columns: a container or a pod has no pid. Existing rows were started by the process
    // driver; their handle is built from the old columns and the exit path the control plane
    // derived (`<state dir>/run/<service>-<idx>.exit`), exactly as that driver writes it.
    "CREATE TABLE instances_new (
        service    TEXT NOT NULL,
        idx        INTEGER NOT NULL,
        version    TEXT NOT NULL,
        handle     TEXT NOT NULL,
        port       INTEGER,
        started_at TEXT NOT NULL,
        restarts   INTEGER NOT NULL,
        spec_hash  TEXT NOT NULL,
        PRIMARY KEY (service, idx)
    ) WITHOUT ROWID;
    INSERT INTO instances_new (service, idx, version, handle, port, started_at, restarts, spec_hash)
    SELECT service, idx, version,
        json_object('driver', 'process', 'data', json_object(
            'instance', json_object('pid', pid, 'start_time', start_time),
            'shim', json_object('pid', shim_pid, 'start_time', shim_start_time),
            'exit_path', (SELECT run_dir FROM temp.migration_env) || '/' || service || '-' || idx || '.exit'
        )),
        port, started_at, restarts, spec_hash
    FROM instances;
    DROP TABLE instances;
    ALTER TABLE instances_new RENAME TO instances;",
    // 7: alerting — the pages open (so a restarted control plane still resolves them) and the
    // outbox of notices to deliver (so none is lost to a restart). Both hold JSON documents
    // the control plane owns the shape of; neither ever holds a receiver's URL or key.
    "CREATE TABLE alert_pages (
        dedup_key   TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        page        TEXT NOT NULL,
        opened_at   TEXT NOT NULL,
        resolved_at TEXT
    ) WITHOUT ROWID;
    CREATE TABLE alert_outbox (
        id           INTEGER PRIMARY KEY,
        receiver     TEXT NOT NULL,
        notice       TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        attempts     INTEGER NOT NULL DEFAULT 0,
        delivered_at TEXT,
        gave_up      TEXT
    );",
    // 8: backups — every backup, drill, restore, prune and verify job with its outcome (JSON
    // the control plane owns), so the last good backup and drill survive a restart.
    "CREATE TABLE backup_jobs (
        id         INTEGER PRIMARY KEY,
        kind       TEXT NOT NULL,
        service    TEXT,
        state      TEXT NOT NULL,
        started_at TEXT NOT NULL,
        job        TEXT NOT NULL
    );
    CREATE INDEX backup_jobs_last ON backup_jobs (service, kind, state, id);",
    // 9: silences and incidents — each a JSON document wharf-api owns the shape of, with the
    // columns the queries select on. Their history is in the ledger; these are the current state.
    "CREATE TABLE silences (
        id         INTEGER PRIMARY KEY,
        ends_at    TEXT NOT NULL,
        expired_at TEXT,
        silence    TEXT NOT NULL
    );
    CREATE TABLE incidents (
        id          INTEGER PRIMARY KEY,
        status      TEXT NOT NULL,
        declared_at TEXT NOT NULL,
        incident    TEXT NOT NULL
    );",
    // 10: runbooks — every run of a manifest runbook as a JSON document the control plane owns
    // (parameters, state, each step's start, end, result and truncated output), so a restarted
    // control plane shows it and can resume it; `started_at` (epoch ms) counts a runbook's runs
    // for its rate limit.
    "CREATE TABLE runbook_runs (
        id         INTEGER PRIMARY KEY,
        runbook    TEXT NOT NULL,
        state      TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        run        TEXT NOT NULL
    );
    CREATE INDEX runbook_runs_started ON runbook_runs (runbook, started_at);",
    // 11: identities and approvals — API tokens (only the SHA-256 of each secret; the token is
    // shown once) and deploys waiting for approval, each a JSON document wharf-api owns the
    // shape of (`PendingDeploy`) beside the columns queries select on. Their history is the ledger.
    "CREATE TABLE api_tokens (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        revoked_by TEXT
    );
    CREATE TABLE deploy_requests (
        id         INTEGER PRIMARY KEY,
        service    TEXT NOT NULL,
        state      TEXT NOT NULL,
        request    TEXT NOT NULL
    );",
    // 12: leases — the control plane's leader lease (holder, expiry by the database's clock in
    // epoch ms, and a fencing token that grows each time it changes hands), for replicas that
    // share one state.
    "CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        token      INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 13: fenced_writes — every write a fenced store refused because its lease had moved on
    // (written outside the refused transaction), so an operator or a test can see through the
    // store what a deposed leader tried to write, and under which token.
    "CREATE TABLE fenced_writes (
        id     INTEGER PRIMARY KEY,
        lease  TEXT NOT NULL,
        token  INTEGER NOT NULL,
        holder TEXT NOT NULL,
        held   INTEGER NOT NULL,
        at_ms  INTEGER NOT NULL,
        what   TEXT NOT NULL
    );",
];

/// The same steps in PostgreSQL's dialect: `BIGINT` for every integer, `BYTEA` for blobs, an
/// identity column where SQLite gives a rowid, no `WITHOUT ROWID`. PostgreSQL support starts
/// at schema 11, so no PostgreSQL database ever held the pid columns step 6 replaces: that
/// step refuses a table with rows rather than guess their handles.
pub const PG_MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE ledger_entries (
        seq     BIGINT PRIMARY KEY,
        time    TEXT NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        details TEXT NOT NULL
    );
    CREATE INDEX ledger_entries_action ON ledger_entries (action);
    CREATE INDEX ledger_entries_target ON ledger_entries (target);
    CREATE TABLE ledger_nodes (
        level BIGINT NOT NULL,
        idx   BIGINT NOT NULL,
        hash  BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    );
    CREATE TABLE ledger_checkpoints (
        id   BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        size BIGINT NOT NULL,
        note TEXT NOT NULL
    );",
    // 2
    "CREATE TABLE instances (
        service         TEXT NOT NULL,
        idx             BIGINT NOT NULL,
        version         TEXT NOT NULL,
        pid             BIGINT NOT NULL,
        start_time      BIGINT NOT NULL,
        shim_pid        BIGINT NOT NULL,
        shim_start_time BIGINT NOT NULL,
        port            BIGINT,
        started_at      TEXT NOT NULL,
        restarts        BIGINT NOT NULL,
        spec_hash       TEXT NOT NULL,
        PRIMARY KEY (service, idx)
    );",
    // 3
    "CREATE TABLE health_history (
        id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        time   TEXT NOT NULL,
        target TEXT NOT NULL,
        state  TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX health_history_target ON health_history (target, id);",
    // 4
    "CREATE TABLE rollouts (
        service    TEXT PRIMARY KEY,
        id         BIGINT NOT NULL,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE deployments (
        service    TEXT PRIMARY KEY,
        state      TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );",
    // 5
    "CREATE TABLE secret_versions (
        name        TEXT NOT NULL,
        version     BIGINT NOT NULL,
        created_at  TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT,
        origin      TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        wrapped_key BYTEA NOT NULL,
        key_nonce   BYTEA NOT NULL,
        nonce       BYTEA NOT NULL,
        ciphertext  BYTEA NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE config_revisions (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        service    TEXT NOT NULL,
        changes    TEXT NOT NULL,
        actor      TEXT NOT NULL,
        reason     TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX config_revisions_service ON config_revisions (service, id);",
    // 6
    "DO $$ BEGIN
        IF EXISTS (SELECT 1 FROM instances) THEN
            RAISE EXCEPTION 'instances of schema 5 on PostgreSQL: no wharf wrote them';
        END IF;
    END $$;
    DROP TABLE instances;
    CREATE TABLE instances (
        service    TEXT NOT NULL,
        idx        BIGINT NOT NULL,
        version    TEXT NOT NULL,
        handle     TEXT NOT NULL,
        port       BIGINT,
        started_at TEXT NOT NULL,
        restarts   BIGINT NOT NULL,
        spec_hash  TEXT NOT NULL,
        PRIMARY KEY (service, idx)
    );",
    // 7
    "CREATE TABLE alert_pages (
        dedup_key   TEXT PRIMARY KEY,
        rule        TEXT NOT NULL,
        page        TEXT NOT NULL,
        opened_at   TEXT NOT NULL,
        resolved_at TEXT
    );
    CREATE TABLE alert_outbox (
        id           BIGINT PRIMARY KEY,
        receiver     TEXT NOT NULL,
        notice       TEXT NOT NULL,
        created_at   TEXT NOT NULL,
        attempts     BIGINT NOT NULL DEFAULT 0,
        delivered_at TEXT,
        gave_up      TEXT
    );",
    // 8
    "CREATE TABLE backup_jobs (
        id         BIGINT PRIMARY KEY,
        kind       TEXT NOT NULL,
        service    TEXT,
        state      TEXT NOT NULL,
        started_at TEXT NOT NULL,
        job        TEXT NOT NULL
    );
    CREATE INDEX backup_jobs_last ON backup_jobs (service, kind, state, id);",
    // 9
    "CREATE TABLE silences (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        ends_at    TEXT NOT NULL,
        expired_at TEXT,
        silence    TEXT NOT NULL
    );
    CREATE TABLE incidents (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        status      TEXT NOT NULL,
        declared_at TEXT NOT NULL,
        incident    TEXT NOT NULL
    );",
    // 10
    "CREATE TABLE runbook_runs (
        id         BIGINT PRIMARY KEY,
        runbook    TEXT NOT NULL,
        state      TEXT NOT NULL,
        started_at BIGINT NOT NULL,
        run        TEXT NOT NULL
    );
    CREATE INDEX runbook_runs_started ON runbook_runs (runbook, started_at);",
    // 11
    "CREATE TABLE api_tokens (
        id         BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        name       TEXT NOT NULL,
        role       TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        revoked_by TEXT
    );
    CREATE TABLE deploy_requests (
        id         BIGINT PRIMARY KEY,
        service    TEXT NOT NULL,
        state      TEXT NOT NULL,
        request    TEXT NOT NULL
    );",
    // 12
    "CREATE TABLE leases (
        name       TEXT PRIMARY KEY,
        holder     TEXT NOT NULL,
        token      BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );",
    // 13
    "CREATE TABLE fenced_writes (
        id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        lease  TEXT NOT NULL,
        token  BIGINT NOT NULL,
        holder TEXT NOT NULL,
        held   BIGINT NOT NULL,
        at_ms  BIGINT NOT NULL,
        what   TEXT NOT NULL
    );",
];

/// The schema version a fully migrated database records (`PRAGMA user_version` on SQLite,
/// `wharf_schema` on PostgreSQL).
pub const SCHEMA_VERSION: usize = MIGRATIONS.len();

// Both engines number their schema alike.
const _: () = assert!(MIGRATIONS.len() == PG_MIGRATIONS.len());
