//! Backups of real servers (PostgreSQL, MariaDB, Redis started per test on free loopback
//! ports as sandboxes), SQLite files and directories into a real restic repository: backup →
//! change → restore returns exactly what was backed up; restic itself reads the repository;
//! drills pass, and fail naming what broke; bad input is a clear error.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use wharf_backup::{
    BackupError, Datastore, DatastoreKind, Repo, Sandbox, Secret, Tools, drill, record_like,
    record_of, record_of_format,
};

const PASSWORD: &str = "repository-password-for-tests";

fn repo(dir: &Path) -> Repo {
    Repo::init(dir, &Secret::new(PASSWORD)).expect("init the repository")
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wharf-backup-test")
        .tempdir()
        .expect("temp dir")
}

fn pg_client(sandbox: &Sandbox) -> postgres::Client {
    let Datastore::Postgres(pg) = sandbox.datastore() else {
        panic!("not postgres")
    };
    postgres::Config::new()
        .host(&pg.host)
        .port(pg.port)
        .user(&pg.user)
        .password(pg.password.as_ref().unwrap().expose())
        .dbname(&pg.dbname)
        .connect(postgres::NoTls)
        .expect("connect")
}

fn psql(sandbox: &Sandbox, sql: &str) {
    pg_client(sandbox).batch_execute(sql).expect("run SQL");
}

fn mariadb(sandbox: &Sandbox, sql: &str) {
    let mut child = Command::new("mariadb")
        .args(["--no-defaults", "-u", "root", "--database=restored"])
        .arg(format!(
            "--socket={}",
            sandbox.dir().join("mysqld.sock").display()
        ))
        .stdin(Stdio::piped())
        .spawn()
        .expect("run mariadb");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "mariadb failed on {sql}");
}

fn redis(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &sandbox.port().to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn restic(repo: &Path, args: &[&str]) -> std::process::Output {
    common::restic(repo, PASSWORD, args)
}

#[test]
fn a_large_table_is_digested_in_block_ranges_on_several_connections_alike() {
    let tools = Tools::from_env();
    let source = Sandbox::start(DatastoreKind::Postgres, &tools).unwrap();
    // ~75 MB: past the size a drill copies in block ranges on several connections.
    psql(
        &source,
        "CREATE TABLE big (id int, pad text);
         INSERT INTO big SELECT i, repeat(md5(i::text), 6) FROM generate_series(1, 300000) i;
         -- A child's rows are its own table's, not its parent's (COPY reads ONLY the parent).
         CREATE TABLE big_child () INHERITS (big);
         INSERT INTO big_child VALUES (0, 'child');",
    );
    let blocks: i64 = pg_client(&source)
        .query_one(
            "SELECT pg_relation_size('big') / current_setting('block_size')::bigint",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        blocks >= 8192,
        "{blocks} blocks: too few to be copied in ranges"
    );
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let backup = repo
        .backup("shop", "db", source.datastore(), &tools)
        .unwrap();
    let recorded = repo.record(&backup).unwrap();
    assert_eq!(recorded.parts["table public.big"].count, 300_000);
    // The ranges' digests add up to the one taken from pg_dump's stream: no row is missed
    // or copied twice where ranges meet.
    assert_eq!(
        record_like(source.datastore(), &tools, &recorded).unwrap(),
        recorded
    );
    assert_eq!(recorded.parts["table public.big_child"].count, 1);
    // A money locale the drill's host lacks is a warning, not a failed record (and leaves no
    // subtransaction behind that would keep the ranges from sharing the snapshot).
    let mut odd_locale = recorded.clone();
    odd_locale
        .settings
        .insert("lc_monetary".into(), "xx_XX.UTF-8".into());
    assert_eq!(
        record_like(source.datastore(), &tools, &odd_locale).unwrap(),
        odd_locale
    );
    psql(&source, "UPDATE big SET pad = 'changed' WHERE id = 299999;");
    let changed = record_like(source.datastore(), &tools, &recorded).unwrap();
    assert_eq!(changed.parts["table public.big"].count, 300_000);
    assert_ne!(
        changed.parts["table public.big"].digest,
        recorded.parts["table public.big"].digest
    );
    let report = drill(&repo, &backup, &tools).unwrap();
    assert!(report.passed(), "{:#?}", report.checks);
}

#[test]
fn postgres_backup_restores_exactly_the_rows_backed_up_and_restic_reads_it() {
    let tools = Tools::from_env();
    let source = Sandbox::start(DatastoreKind::Postgres, &tools).unwrap();
    psql(
        &source,
        "CREATE TABLE users (id int PRIMARY KEY, name text, note text);
         INSERT INTO users SELECT i, 'user ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'n' END
           FROM generate_series(1, 500) i;
         CREATE TABLE orders (id serial PRIMARY KEY, user_id int REFERENCES users, total numeric);
         INSERT INTO orders (user_id, total) SELECT i % 500 + 1, i * 1.5 FROM generate_series(1, 300) i;
         CREATE TABLE docs (id int, body json);
         INSERT INTO docs SELECT i, json_build_object('n', i) FROM generate_series(1, 20) i;
         -- A column added to a parent after its child: the child has (a, b, c, d), and a
         -- restore recreates it as (a, b, d, c); the rows are compared in pg_dump's order.
         CREATE TABLE parent (a int, b text);
         CREATE TABLE child (c int) INHERITS (parent);
         ALTER TABLE parent ADD COLUMN d text;
         INSERT INTO child VALUES (1, 'x', 2, 'y'), (3, NULL, 4, 'z');
         -- Values whose text depends on settings: time zone, bytea, floats, intervals.
         CREATE TABLE typed (t timestamptz, b bytea, f float8, i interval, g int GENERATED ALWAYS AS (1) STORED);
         INSERT INTO typed VALUES ('2026-01-02 03:04:05+02', '\\x00ff', 0.1, '1 day 2 hours');",
    );
    let dir = temp();
    let repo_dir = dir.path().join("repo");
    let repo = repo(&repo_dir);
    let backup = repo
        .backup("shop", "db", source.datastore(), &tools)
        .unwrap();
    let recorded = repo.record(&backup).unwrap();
    assert_eq!(recorded.parts["table public.users"].count, 500);
    assert_eq!(recorded.parts["table public.orders"].count, 300);
    // Rows are digested from the COPY text pg_dump wrote as it streamed into the backup (no
    // second scan of the database), whatever the column types (`json` has no hash function).
    for table in ["users", "orders", "docs"] {
        let digest = &recorded.parts[&format!("table public.{table}")].digest;
        assert!(digest.starts_with("copy:"), "{table}: {digest}");
    }
    assert_eq!(recorded.version, 4);
    assert_eq!(recorded.settings["client_encoding"], "UTF8");

    psql(
        &source,
        "DELETE FROM orders WHERE id > 10; UPDATE users SET name = 'changed' WHERE id = 7;
         UPDATE docs SET body = '{\"n\": 0}' WHERE id = 3;",
    );
    assert_ne!(
        record_like(source.datastore(), &tools, &recorded).unwrap(),
        recorded
    );
    repo.restore(&backup, source.datastore(), &tools).unwrap();
    assert_eq!(
        record_like(source.datastore(), &tools, &recorded).unwrap(),
        recorded
    );
    assert_eq!(recorded.columns["table public.child"], "(a, b, c, d)");
    assert_eq!(recorded.parts["table public.child"].count, 2);

    let report = drill(&repo, &backup, &tools).unwrap();
    assert!(report.passed(), "{:#?}", report.checks);
    // Records of format 1 (older backups) digest rows with MD5, and a drill of one still
    // computes that digest: format 2's faster hash gives another value for the same rows.
    let v1 = record_of_format(source.datastore(), &tools, 1).unwrap();
    let md5: String = pg_client(&source)
        .query_one(
            "SELECT sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::int8::numeric)::text \
             FROM public.users t",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(v1.parts["table public.users"].digest, md5);
    assert_eq!(v1.parts["table public.users"].count, 500);
    assert_ne!(
        v1.parts["table public.users"].digest,
        recorded.parts["table public.users"].digest
    );
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.name == "content of table public.users")
    );

    // restic itself lists and restores what wharf wrote.
    let listed = restic(&repo_dir, &["snapshots", "--json"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&backup.id) && text.contains("service=db"),
        "{text}"
    );
    let target = dir.path().join("restic-restore");
    let restored = restic(
        &repo_dir,
        &["restore", &backup.id, "--target", target.to_str().unwrap()],
    );
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let dump = std::fs::read(target.join("shop/db/data/postgres.dump")).unwrap();
    assert!(
        dump.starts_with(b"PGDMP"),
        "a pg_dump custom-format archive, not {} bytes starting {:?}",
        dump.len(),
        &dump[..dump.len().min(16)]
    );
    let record_bytes = std::fs::read(target.join("shop/db/record.json")).unwrap();
    let record: wharf_backup::Record = serde_json::from_slice(&record_bytes).unwrap();
    assert_eq!(record, recorded);
    // The tree holds each file's true size (the stream's was unknown when it was archived):
    // restic restored every byte wharf read, no more.
    assert_eq!(
        (dump.len() + record_bytes.len()) as u64,
        backup.bytes,
        "restored sizes"
    );
    let checked = restic(&repo_dir, &["check", "--read-data"]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn mariadb_backup_restores_exactly_the_rows_backed_up() {
    let tools = Tools::from_env();
    let source = Sandbox::start(DatastoreKind::Mariadb, &tools).unwrap();
    mariadb(
        &source,
        "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2), blob_ BLOB);
         INSERT INTO items VALUES (1, 'one', 1.50, NULL), (2, 'two', NULL, 0x00ff), (3, NULL, 3.00, 'x');
         CREATE TABLE log (n INT);
         INSERT INTO log VALUES (1), (1), (2);",
    );
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let backup = repo
        .backup("shop", "maria", source.datastore(), &tools)
        .unwrap();
    let recorded = repo.record(&backup).unwrap();
    assert_eq!(recorded.parts["table items"].count, 3);
    assert_eq!(recorded.parts["table log"].count, 3);

    mariadb(
        &source,
        "UPDATE items SET name = 'changed' WHERE id = 1; DELETE FROM log WHERE n = 2;",
    );
    assert_ne!(record_of(source.datastore(), &tools).unwrap(), recorded);
    repo.restore(&backup, source.datastore(), &tools).unwrap();
    assert_eq!(record_of(source.datastore(), &tools).unwrap(), recorded);
    let report = drill(&repo, &backup, &tools).unwrap();
    assert!(report.passed(), "{:#?}", report.checks);
}

#[test]
fn redis_backup_restores_keys_values_and_ttls() {
    let tools = Tools::from_env();
    let source = Sandbox::start(DatastoreKind::Redis, &tools).unwrap();
    redis(&source, &["SET", "plain", "value"]);
    redis(&source, &["SET", "expiring", "soon", "EX", "86400"]);
    redis(&source, &["HSET", "hash", "a", "1", "b", "2"]);
    redis(&source, &["RPUSH", "list", "x", "y", "z"]);
    redis(&source, &["SADD", "set", "m", "n"]);
    redis(&source, &["ZADD", "zset", "1.5", "p"]);
    redis(&source, &["-n", "3", "SET", "other-db", "v"]);
    let expiry = redis(&source, &["PEXPIRETIME", "expiring"]);
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let backup = repo
        .backup("shop", "cache", source.datastore(), &tools)
        .unwrap();
    let recorded = repo.record(&backup).unwrap();
    assert_eq!(recorded.parts["redis db0"].count, 6);
    assert_eq!(recorded.parts["redis db3"].count, 1);

    redis(&source, &["DEL", "plain"]);
    redis(&source, &["SET", "new", "key"]);
    redis(&source, &["PERSIST", "expiring"]);
    repo.restore(&backup, source.datastore(), &tools).unwrap();
    assert_eq!(record_of(source.datastore(), &tools).unwrap(), recorded);
    assert_eq!(redis(&source, &["GET", "plain"]), "value");
    assert_eq!(redis(&source, &["EXISTS", "new"]), "0");
    assert_eq!(redis(&source, &["PEXPIRETIME", "expiring"]), expiry);
    let report = drill(&repo, &backup, &tools).unwrap();
    assert!(report.passed(), "{:#?}", report.checks);
}

#[test]
fn sqlite_and_directory_backups_restore_exactly() {
    let tools = Tools::from_env();
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));

    let db = dir.path().join("app.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB, r REAL);
         INSERT INTO t VALUES (1, 'a', x'00', 1.5), (2, NULL, NULL, NULL);",
    )
    .unwrap();
    let store = Datastore::Sqlite(db.clone());
    let backup = repo.backup("shop", "lite", &store, &tools).unwrap();
    let recorded = repo.record(&backup).unwrap();
    conn.execute_batch("DELETE FROM t WHERE id = 1; CREATE TABLE extra (x);")
        .unwrap();
    repo.restore(&backup, &store, &tools).unwrap();
    assert_eq!(record_of(&store, &tools).unwrap(), recorded);
    assert!(drill(&repo, &backup, &tools).unwrap().passed());

    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub/deeper")).unwrap();
    std::fs::write(files.join("a.txt"), "alpha").unwrap();
    std::fs::write(files.join("sub/deeper/b.bin"), vec![7u8; 100_000]).unwrap();
    let store = Datastore::Directory(files.clone());
    let backup = repo.backup("shop", "uploads", &store, &tools).unwrap();
    let recorded = repo.record(&backup).unwrap();
    assert_eq!(recorded.parts["files"].count, 2);
    std::fs::write(files.join("a.txt"), "changed").unwrap();
    std::fs::write(files.join("added.txt"), "new").unwrap();
    repo.restore(&backup, &store, &tools).unwrap();
    assert_eq!(
        std::fs::read_to_string(files.join("a.txt")).unwrap(),
        "alpha"
    );
    assert!(
        !files.join("added.txt").exists(),
        "restore makes the folder equal to the backup"
    );
    assert_eq!(record_of(&store, &tools).unwrap(), recorded);
    assert!(drill(&repo, &backup, &tools).unwrap().passed());
    assert_eq!(repo.backups(Some("shop"), None).unwrap().len(), 2);
    assert!(repo.verify_key().unwrap().snapshot.is_some());
}

#[test]
fn a_corrupted_pack_file_is_named_by_check_and_fails_the_drill() {
    let tools = Tools::from_env();
    let dir = temp();
    let repo_dir = dir.path().join("repo");
    let repo = repo(&repo_dir);
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let content: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(files.join("data.bin"), &content).unwrap();
    let backup = repo
        .backup("shop", "files", &Datastore::Directory(files), &tools)
        .unwrap();
    repo.check(true).unwrap();

    // Flip bytes in the middle of the largest pack (the data pack).
    let pack = walkdir::WalkDir::new(repo_dir.join("data"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap();
    let name = pack.file_name().to_string_lossy().into_owned();
    let mut bytes = std::fs::read(pack.path()).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xff;
    }
    std::fs::write(pack.path(), bytes).unwrap();

    let err = repo.check(true).unwrap_err().to_string();
    assert!(err.contains(&name[..8]), "the error names the pack: {err}");
    let report = drill(&repo, &backup, &tools).unwrap();
    assert!(!report.passed());
    let failed: Vec<_> = report.failures().map(|c| c.name.clone()).collect();
    assert!(!failed.is_empty(), "{:#?}", report.checks);
}

#[test]
fn a_wrong_repository_password_is_a_clear_error() {
    let dir = temp();
    repo(&dir.path().join("repo"));
    let err = Repo::open(&dir.path().join("repo"), &Secret::new("not the password")).unwrap_err();
    assert!(matches!(err, BackupError::WrongPassword { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("wrong password") && !text.contains("not the password"),
        "{text}"
    );
}

#[test]
fn a_missing_pg_dump_is_a_clear_error_and_leaves_no_backup() {
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let store = Datastore::from_url(
        DatastoreKind::Postgres,
        &Secret::new("postgres://u:secret-pw@127.0.0.1:1/db"),
    )
    .unwrap();
    let tools = Tools::with_path(&dir.path().join("empty-bin").into_os_string());
    let err = repo.backup("shop", "db", &store, &tools).unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::ToolMissing {
                tool: "pg_dump",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("pg_dump") && text.contains("postgresql-client"),
        "{text}"
    );
    assert!(repo.backups(None, None).unwrap().is_empty());
}

#[test]
fn a_failing_dump_leaves_no_snapshot_and_no_password_in_the_error() {
    let tools = Tools::from_env();
    let source = Sandbox::start(DatastoreKind::Postgres, &tools).unwrap();
    let Datastore::Postgres(mut pg) = source.datastore().clone() else {
        unreachable!()
    };
    pg.password = Some(Secret::new("wrong-password-123"));
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let err = repo
        .backup("shop", "db", &Datastore::Postgres(pg), &tools)
        .unwrap_err()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("wrong-password-123"), "{err}");
    assert!(repo.backups(None, None).unwrap().is_empty());
}

#[test]
fn an_unreachable_datastore_is_a_clear_error_naming_it() {
    let dir = temp();
    let repo = repo(&dir.path().join("repo"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:pw-not-shown@127.0.0.1:{port}/db");
    let store = Datastore::from_url(DatastoreKind::Postgres, &Secret::new(url)).unwrap();
    let err = repo
        .backup("shop", "db", &store, &Tools::from_env())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("pw-not-shown"), "{err}");
    assert!(repo.backups(None, None).unwrap().is_empty());
}

#[test]
fn forget_applies_the_retention_policy_to_the_repository() {
    let tools = Tools::from_env();
    let dir = temp();
    let repo_dir = dir.path().join("repo");
    let repo = repo(&repo_dir);
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for round in 0..3 {
        std::fs::write(files.join("f"), format!("round {round}")).unwrap();
        repo.backup(
            "shop",
            "files",
            &Datastore::Directory(files.clone()),
            &tools,
        )
        .unwrap();
    }
    let policy = wharf_backup::Retention {
        last: Some(2),
        ..Default::default()
    };
    let now = jiff::Zoned::now();
    let planned = repo.forget("shop", "files", &policy, &now, true).unwrap();
    assert_eq!(
        planned.iter().map(|(_, kept)| *kept).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(
        repo.backups(None, None).unwrap().len(),
        3,
        "a dry run deletes nothing"
    );
    repo.forget("shop", "files", &policy, &now, false).unwrap();
    let left = repo.backups(None, None).unwrap();
    assert_eq!(left.len(), 2);
    assert_eq!(
        left,
        planned[..2]
            .iter()
            .rev()
            .map(|(b, _)| b.clone())
            .collect::<Vec<_>>()
    );
    let listed = restic(&repo_dir, &["snapshots", "--json"]);
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(snapshots.as_array().unwrap().len(), 2);
}
