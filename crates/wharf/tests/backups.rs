//! Backups through the control plane, end to end: real datastores (a PostgreSQL server started
//! per test on a free port, SQLite files), the `wharf` binary's `backup`, `drill` and
//! `restore` commands, the restic repository they write, the ledger entries every outcome
//! leaves, and the deploy gate of an environment's `require.backup_max_age`.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::*;
use serde_json::Value;
use wharf_backup::{Datastore, DatastoreKind, Sandbox, Tools};

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "{}", text(&output));
    output
}

fn jobs(output: &Output) -> Vec<Value> {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("not a job list: {}", text(output)))
}

fn sqlite_rows(path: &Path, rows: i64) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    for id in 0..rows {
        db.execute(
            "INSERT INTO items (name) VALUES (?1)",
            [format!("item {id}")],
        )
        .unwrap();
    }
}

fn sqlite_count(path: &Path) -> i64 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap()
}

/// The PostgreSQL server's URL (with its password) and a way to run SQL on it.
struct Postgres {
    sandbox: Sandbox,
    url: String,
    password: String,
}

impl Postgres {
    fn start() -> Postgres {
        let sandbox = Sandbox::start(DatastoreKind::Postgres, &Tools::from_env()).unwrap();
        let Datastore::Postgres(conn) = sandbox.datastore() else {
            unreachable!("a postgres sandbox")
        };
        let password = conn.password.as_ref().unwrap().expose().to_owned();
        let url = format!(
            "postgres://{}:{password}@127.0.0.1:{}/{}",
            conn.user, conn.port, conn.dbname
        );
        Postgres {
            sandbox,
            url,
            password,
        }
    }

    /// Runs `sql` with psql and returns its unaligned output.
    fn sql(&self, sql: &str) -> String {
        let output = std::process::Command::new("psql")
            .args([
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "wharf",
            ])
            .args([
                "-p",
                &self.sandbox.port().to_string(),
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.password)
            .output()
            .unwrap();
        assert!(output.status.success(), "{sql}: {}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Row count and a digest of the table's whole content, in a stable order.
    fn fingerprint(&self) -> String {
        self.sql("SELECT count(*) || ' ' || md5(string_agg(id || ':' || name || ':' || amount, ',' ORDER BY id)) FROM orders")
    }
}

#[test]
fn postgres_backup_drill_and_restore_in_place_return_exactly_the_rows_backed_up() {
    let db = Postgres::start();
    db.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, name text, amount numeric);
         INSERT INTO orders SELECT i, 'order ' || i, i * 1.5 FROM generate_series(1, 5000) i;",
    );
    let backed_up = db.fingerprint();
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: shop
secrets: [DB_URL, STAGING_URL]
services:
  db:
    kind: postgres
    url: "${{secret:DB_URL}}"
    backup: {{schedule: "0 3 * * *", retain: {{last: 5}}}}
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
    depends_on: {{db: {{condition: started}}}}
"#
    ));
    stack.set_secret("DB_URL", &db.url);
    ok(stack.up());

    let backup = jobs(&ok(
        stack.wharf(&["backup", "run", "db", "--output", "json"])
    ));
    assert_eq!(backup[0]["state"], "succeeded", "{backup:?}");
    let snapshot = backup[0]["snapshot"].as_str().unwrap().to_owned();
    assert!(backup[0]["bytes"].as_u64().unwrap() > 0);

    // The application changes the data after the backup.
    db.sql("DELETE FROM orders WHERE id > 4000; UPDATE orders SET amount = 0 WHERE id < 10;");
    assert_ne!(db.fingerprint(), backed_up);

    // A drill restores into a sandbox server and compares with the backup's record.
    let drill = jobs(&ok(stack.wharf(&["drill", "db", "--output", "json"])));
    assert_eq!(drill[0]["state"], "succeeded", "{drill:?}");
    assert_eq!(drill[0]["snapshot"], snapshot.as_str());
    let checks = drill[0]["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["name"].as_str().unwrap().contains("orders") && c["passed"] == true),
        "{checks:?}"
    );
    assert!(drill[0]["rto_ms"].as_u64().is_some() && drill[0]["rpo_s"].as_u64().is_some());

    // In place, confirmed: the dependents stop around it and the rows are the backed-up ones.
    let refused = stack.wharf(&["restore", "db"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let restore = jobs(&ok(stack.wharf(&[
        "restore",
        "db",
        "--confirm",
        "--output",
        "json",
    ])));
    assert_eq!(restore[0]["state"], "succeeded", "{restore:?}");
    assert_eq!(db.fingerprint(), backed_up);
    eventually("web runs again", Duration::from_secs(30), || {
        (stack.service("web")["state"] == "running").then_some(())
    });

    // Into another server (a staging copy), its URL from a secret: the same rows there.
    let staging = Postgres::start();
    stack.set_secret("STAGING_URL", &staging.url);
    let clear = stack.wharf(&["restore", "db", "--to", &staging.url]);
    assert_eq!(
        clear.status.code(),
        Some(2),
        "a password on argv is refused"
    );
    assert!(!text(&clear).contains(&staging.password));
    let to = jobs(&ok(stack.wharf(&[
        "restore",
        "db",
        "--to",
        "${secret:STAGING_URL}",
        "--output",
        "json",
    ])));
    assert_eq!(to[0]["state"], "succeeded", "{to:?}");
    assert_eq!(staging.fingerprint(), backed_up);
    assert!(
        to[0]["target"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{}/postgres", staging.sandbox.port()))
    );
    // Production itself is not a `--to` target (that is `--confirm`, which stops dependents),
    // and no secret can be spliced into a URL that points elsewhere.
    for (url, why) in [
        ("${secret:DB_URL}", "the datastore itself"),
        (
            "postgres://x:${secret:DB_URL}@127.0.0.1:1/d",
            "a URL without secrets",
        ),
    ] {
        let refused = stack.wharf(&["restore", "db", "--to", url, "--output", "json"]);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        let refused = jobs(&refused);
        assert!(
            refused[0]["error"].as_str().unwrap().contains(why),
            "{refused:?}"
        );
    }
    assert_eq!(db.fingerprint(), backed_up);

    let ledger = stack.ledger();
    let run = actions(&ledger, "backup.run");
    assert_eq!(run.len(), 1);
    assert_eq!(run[0]["target"], "db");
    assert_eq!(run[0]["details"]["snapshot"], snapshot.as_str());
    let drills = actions(&ledger, "backup.drill");
    assert_eq!(drills[0]["details"]["state"], "succeeded");
    assert!(drills[0]["details"]["rto_ms"].is_u64());
    assert_eq!(actions(&ledger, "backup.restore_begin").len(), 1);
    let restored = actions(&ledger, "backup.restore");
    assert_eq!(
        restored[0]["details"]["restarted"],
        serde_json::json!(["web"])
    );
    // Neither the database's password nor the repository's is anywhere in the ledger.
    let all = serde_json::to_string(&ledger).unwrap();
    assert!(!all.contains(&db.password));
    assert!(!all.contains(&staging.password));
    ok(stack.wharf(&["audit", "verify"]));

    // Debian's restic reads what wharf wrote, with the exported password.
    let key = ok(stack.wharf(&["backup", "key", "export", "--reveal"]));
    let password = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    assert!(
        !all.contains(&password),
        "the repository password is in the ledger"
    );
    let restic = std::process::Command::new("restic")
        .args(["-r", ".wharf/backups", "snapshots", "--json"])
        .current_dir(stack.path())
        .env("RESTIC_PASSWORD", &password)
        .output()
        .unwrap();
    assert!(restic.status.success(), "{}", text(&restic));
    let snapshots: Value = serde_json::from_slice(&restic.stdout).unwrap();
    assert!(
        snapshots
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["short_id"] == snapshot.as_str()),
        "{snapshots}"
    );
}

const SQLITE_STACK: &str = r#"
name: shop
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {schedule: "0 3 * * *", retain: {last: 3}}
  web:
    command: [TESTBED, --port, "${PORT}", --version, "${VERSION}"]
    version: "1"
    port: WEB_PORT
    depends_on: {db: {condition: started}}
environments:
  prod:
    require: {backup_max_age: 1h}
"#;

fn sqlite_stack() -> Stack {
    let stack = Stack::new(&SQLITE_STACK.replace("WEB_PORT", &free_port().to_string()));
    sqlite_rows(&stack.path().join("app.db"), 200);
    stack
}

#[test]
fn deploy_is_refused_while_backup_max_age_is_not_met_and_allowed_after_a_backup() {
    let stack = sqlite_stack();
    ok(stack.wharf(&["up", "-d", "--env", "prod", "--wait-timeout", "60s"]));
    let refused = stack.wharf(&["deploy", "web", "--version", "2"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let why = text(&refused);
    assert!(
        why.contains("backup_max_age") || why.contains("no successful backup"),
        "{why}"
    );
    assert!(why.contains("db"), "{why}");
    // Preflight fails on the same requirement, naming it.
    let preflight = stack.wharf(&["preflight", "--env", "prod", "--output", "json"]);
    assert_eq!(preflight.status.code(), Some(1), "{}", text(&preflight));
    assert!(
        text(&preflight).contains("no successful backup"),
        "{}",
        text(&preflight)
    );

    ok(stack.wharf(&["backup", "run"]));
    ok(stack.wharf(&["deploy", "web", "--version", "2"]));
    assert!(actions(&stack.ledger(), "deploy.start").len() == 1);
}

#[test]
fn a_drill_of_a_repository_with_a_corrupted_pack_fails_naming_it_and_stays_in_the_ledger() {
    let stack = sqlite_stack();
    ok(stack.up());
    ok(stack.wharf(&["backup", "run", "db"]));
    let passed = jobs(&ok(stack.wharf(&["drill", "db", "--output", "json"])));
    assert_eq!(passed[0]["state"], "succeeded");

    // Flip bytes in the middle of every pack file of the repository.
    let data = stack.path().join(".wharf/backups/data");
    let mut damaged = 0;
    for entry in walk(&data) {
        let mut bytes = std::fs::read(&entry).unwrap();
        let middle = bytes.len() / 2;
        for byte in &mut bytes[middle..(middle + 16).min(entry_len(&entry))] {
            *byte ^= 0xff;
        }
        std::fs::write(&entry, bytes).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0, "no pack file under {}", data.display());

    let failed = stack.wharf(&["drill", "db", "--output", "json"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let failed = jobs(&failed);
    assert_eq!(failed[0]["state"], "failed");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(!error.is_empty());
    let verify = stack.wharf(&["backup", "verify", "--read-data", "--output", "json"]);
    assert_eq!(verify.status.code(), Some(1), "{}", text(&verify));
    let verify = jobs(&verify);
    assert!(
        verify[0]["error"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("pack"),
        "verify names the damaged pack: {verify:?}"
    );

    let ledger = stack.ledger();
    let drills = actions(&ledger, "backup.drill");
    assert_eq!(drills.len(), 2);
    assert_eq!(drills[0]["details"]["state"], "succeeded");
    assert_eq!(drills[1]["details"]["state"], "failed");
    assert!(drills[1]["details"]["rto_ms"].is_u64() || drills[1]["details"]["error"].is_string());
    ok(stack.wharf(&["audit", "verify"]));
    // The datastore's status shows the failed drill.
    let backups = &stack.service("db")["backups"];
    assert!(backups["last_drill_failed"].is_string(), "{backups}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn entry_len(path: &Path) -> usize {
    std::fs::metadata(path).unwrap().len() as usize
}

#[test]
fn a_restore_in_place_brings_a_sqlite_database_back_and_bad_requests_change_nothing() {
    let stack = sqlite_stack();
    ok(stack.up());
    let db = stack.path().join("app.db");
    // Nothing to drill yet: a failed job saying so, in the ledger.
    let none = stack.wharf(&["drill", "db"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(text(&none).contains("no backup yet"), "{}", text(&none));
    // Not a datastore with backups, or not a service at all: refused, exit 2.
    for service in ["web", "nosuch"] {
        let refused = stack.wharf(&["backup", "run", service]);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        assert!(text(&refused).contains("not a datastore with `backup:`"));
    }
    ok(stack.wharf(&["backup", "run", "db"]));
    sqlite_rows(&db, 50);
    assert_eq!(sqlite_count(&db), 250);
    let restored = jobs(&ok(stack.wharf(&[
        "restore",
        "db",
        "--confirm",
        "--output",
        "json",
    ])));
    assert_eq!(restored[0]["state"], "succeeded", "{restored:?}");
    assert_eq!(sqlite_count(&db), 200);

    // A wrong repository password: a clear error, nothing stored as a backup.
    stack.set_secret("WHARF_BACKUP_PASSWORD", "not-the-password");
    let wrong = stack.wharf(&["backup", "run", "db", "--output", "json"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    let wrong = jobs(&wrong);
    assert!(
        wrong[0]["error"].as_str().unwrap().contains("password"),
        "{wrong:?}"
    );
    assert!(
        !text(&stack.wharf(&["backup", "show", &wrong[0]["id"].to_string()]))
            .contains("not-the-password")
    );
    let status = &stack.service("db")["backups"];
    assert_eq!(status["health"], "failed", "{status}");
    let ledger = stack.ledger();
    assert_eq!(actions(&ledger, "backup.failed").len(), 1);
    assert!(
        !serde_json::to_string(&ledger)
            .unwrap()
            .contains("not-the-password")
    );
}

#[test]
fn scheduled_backups_run_and_a_failing_schedule_shows_in_status_and_preflight() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: shop
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {{schedule: "* * * * *", retain: {{last: 2}}}}
  files:
    kind: directory
    path: ./missing-folder
    backup: {{schedule: "* * * * *"}}
  web:
    command: [TESTBED, --port, "${{PORT}}"]
    port: {port}
"#
    ));
    sqlite_rows(&stack.path().join("app.db"), 10);
    ok(stack.up());
    // Both come due within a minute; one succeeds, the other cannot read its folder.
    let (good, bad) = eventually(
        "both scheduled backups ran",
        // The next minute's boundary, then the first backup creates the repository.
        Duration::from_secs(150),
        || {
            let ledger = stack.ledger();
            let good = actions(&ledger, "backup.run");
            let bad = actions(&ledger, "backup.failed");
            (!good.is_empty() && !bad.is_empty()).then_some((good, bad))
        },
    );
    assert_eq!(good[0]["target"], "db");
    assert_eq!(good[0]["details"]["trigger"], "schedule");
    assert_eq!(bad[0]["target"], "files");
    assert!(
        bad[0]["details"]["error"]
            .as_str()
            .unwrap()
            .contains("missing-folder"),
        "{bad:?}"
    );
    let files = &stack.service("files")["backups"];
    assert_eq!(files["health"], "failed", "{files}");
    assert!(files["reason"].as_str().unwrap().contains("missing-folder"));
    let preflight = stack.wharf(&["preflight", "--output", "json"]);
    assert_eq!(preflight.status.code(), Some(1), "{}", text(&preflight));
    assert!(
        text(&preflight).contains("files backups"),
        "{}",
        text(&preflight)
    );
}

/// A small application reading the SQLite database at `$DB_PATH` with the query in
/// `query.sql` (its "version"): `/orders` answers 200 with the count, 500 when the query fails.
const APP: &str = r#"
import http.server, os, sqlite3, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = 200, "ok"
        else:
            try:
                db = sqlite3.connect(os.environ["DB_PATH"])
                body = str(db.execute(open("query.sql").read()).fetchone()[0])
                code = 200
            except Exception as error:
                code, body = 500, str(error)
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"#;

#[test]
fn a_drill_fails_naming_the_smoke_check_when_the_restored_data_breaks_the_app() {
    let port = free_port();
    let stack = Stack::new(&format!(
        r#"
name: shop
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {{schedule: "0 3 * * *"}}
  web:
    command: [python3, app.py, "${{PORT}}"]
    port: {port}
    env: {{DB_PATH: ./app.db}}
    depends_on: {{db: {{condition: started}}}}
    probes:
      ready: {{http: {{path: /health}}, interval: 200ms}}
smoke:
  - name: orders page
    http: {{url: "http://127.0.0.1:{port}/orders", expect_status: 200}}
"#
    ));
    std::fs::write(stack.path().join("app.py"), APP).unwrap();
    std::fs::write(stack.path().join("query.sql"), "SELECT count(*) FROM items").unwrap();
    let db = stack.path().join("app.db");
    sqlite_rows(&db, 20);
    ok(stack.up());
    ok(stack.wharf(&["backup", "run", "db"]));

    // The restored copy serves the application: the smoke check passes against it.
    let passed = jobs(&ok(stack.wharf(&["drill", "db", "--output", "json"])));
    let checks = passed[0]["checks"].as_array().unwrap();
    let smoke = checks
        .iter()
        .find(|c| c["name"].as_str().unwrap().contains("orders page"))
        .unwrap_or_else(|| panic!("no smoke check in the drill: {checks:?}"));
    assert_eq!(smoke["passed"], true, "{smoke}");

    // A migration after the backup: the application now needs a column the backup lacks.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("ALTER TABLE items ADD COLUMN price INTEGER DEFAULT 1")
        .unwrap();
    std::fs::write(
        stack.path().join("query.sql"),
        "SELECT sum(price) FROM items",
    )
    .unwrap();
    assert_eq!(
        get(port, "/orders").map(|(status, _)| status),
        Some(200),
        "production serves the new version"
    );
    let failed = stack.wharf(&["drill", "db", "--output", "json"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    let failed = jobs(&failed);
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains("smoke `orders page` against web"), "{error}");
    let checks = failed[0]["checks"].as_array().unwrap();
    // The data itself restored exactly: only the application's check fails.
    assert!(
        checks
            .iter()
            .filter(|c| c["passed"] == false)
            .all(|c| c["name"].as_str().unwrap().contains("orders page")),
        "{checks:?}"
    );
    let drills = actions(&stack.ledger(), "backup.drill");
    assert_eq!(drills.last().unwrap()["details"]["state"], "failed");
    // No sandbox app is left running.
    let leftover = std::process::Command::new("pgrep")
        .args(["-f", "app.py"])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&leftover.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let instance: Vec<String> = stack.pids().iter().map(|p| p.to_string()).collect();
    assert!(
        pids.iter()
            .all(|p| instance.contains(p) || !alive(p.parse().unwrap())),
        "a sandbox app outlived its drill: {pids:?}, instances {instance:?}"
    );
}

/// A moto server (PyPI `moto[server]`, an S3-compatible server installed by `scripts/test`)
/// on a port the kernel picks, with a bucket and an IAM key; killed on drop.
struct Moto {
    child: std::process::Child,
    endpoint: String,
    key_id: String,
    secret: String,
}

const MOTO_SETUP: &str = r#"
import json, sys
import boto3
endpoint = sys.argv[1]
session = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup",
                                region_name="us-east-1")
iam = session.client("iam", endpoint_url=endpoint)
iam.create_user(UserName="wharf")
key = iam.create_access_key(UserName="wharf")["AccessKey"]
session.client("s3", endpoint_url=endpoint).create_bucket(Bucket="backups")
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

impl Moto {
    fn start() -> Moto {
        use std::io::BufRead;
        let mut child = std::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start moto (scripts/test installs moto[server])");
        let (tx, rx) = std::sync::mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(address) = line.split("Running on ").nth(1) {
                        let _ = tx.send(address.trim().to_owned());
                    }
                }
            });
        }
        let mut moto = Moto {
            child,
            endpoint: String::new(),
            key_id: String::new(),
            secret: String::new(),
        };
        moto.endpoint = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("moto did not say where it listens within 60 s");
        let out = std::process::Command::new("python3")
            .args(["-c", MOTO_SETUP, &moto.endpoint])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let keys = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (key_id, secret) = keys.split_once(' ').unwrap();
        moto.key_id = key_id.to_owned();
        moto.secret = secret.to_owned();
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn backups_go_to_an_s3_repository_on_a_moto_server_and_restic_reads_them() {
    let moto = Moto::start();
    let repository = format!("s3:{}/backups/shop", moto.endpoint);
    let stack = Stack::new(&format!(
        r#"
name: shop
secrets: [S3_KEY_ID, S3_SECRET]
backups:
  repository: "{repository}"
  access_key_id: "${{secret:S3_KEY_ID}}"
  secret_access_key: "${{secret:S3_SECRET}}"
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {{schedule: "0 3 * * *"}}
"#
    ));
    sqlite_rows(&stack.path().join("app.db"), 100);
    stack.set_secret("S3_KEY_ID", &moto.key_id);
    stack.set_secret("S3_SECRET", &moto.secret);
    ok(stack.up());
    let backup = jobs(&ok(
        stack.wharf(&["backup", "run", "db", "--output", "json"])
    ));
    assert_eq!(backup[0]["state"], "succeeded", "{backup:?}");
    let snapshot = backup[0]["snapshot"].as_str().unwrap().to_owned();
    assert!(
        !stack.path().join(".wharf/backups").exists(),
        "nothing went to the local folder"
    );
    let drill = jobs(&ok(stack.wharf(&["drill", "db", "--output", "json"])));
    assert_eq!(drill[0]["state"], "succeeded", "{drill:?}");
    let list = ok(stack.wharf(&["backup", "list", "--output", "json"]));
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["repository"], repository.as_str());
    assert_eq!(listed["snapshots"][0]["id"], snapshot.as_str());
    for output in [text(&list), serde_json::to_string(&stack.ledger()).unwrap()] {
        assert!(
            !output.contains(&moto.secret),
            "the S3 secret key leaked: {output}"
        );
    }
    let key = ok(stack.wharf(&["backup", "key", "export", "--reveal"]));
    assert!(text(&key).contains(&repository), "{}", text(&key));
    let password = String::from_utf8_lossy(&key.stdout).trim().to_owned();
    let restic = std::process::Command::new("restic")
        .args(["-r", &repository, "snapshots", "--json", "--no-lock"])
        .env("RESTIC_PASSWORD", &password)
        .env("RESTIC_CACHE_DIR", stack.path().join("restic-cache"))
        .env("AWS_ACCESS_KEY_ID", &moto.key_id)
        .env("AWS_SECRET_ACCESS_KEY", &moto.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(restic.status.success(), "{}", text(&restic));
    let snapshots: Value = serde_json::from_slice(&restic.stdout).unwrap();
    assert_eq!(snapshots[0]["short_id"], snapshot.as_str());
}

#[test]
fn a_folder_repository_named_in_the_manifest_holds_the_backups() {
    let stack = Stack::new(
        r#"
name: shop
backups: {repository: ./vault}
services:
  db:
    kind: sqlite
    path: ./app.db
    backup: {schedule: "0 3 * * *"}
"#,
    );
    sqlite_rows(&stack.path().join("app.db"), 10);
    ok(stack.up());
    let backup = jobs(&ok(
        stack.wharf(&["backup", "run", "db", "--output", "json"])
    ));
    assert_eq!(backup[0]["state"], "succeeded", "{backup:?}");
    assert!(
        stack.path().join("vault/config").exists(),
        "the repository is in ./vault"
    );
    assert!(!stack.path().join(".wharf/backups").exists());
    let list = ok(stack.wharf(&["backup", "list", "--output", "json"]));
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(
        listed["repository"].as_str().unwrap().ends_with("/vault"),
        "{listed}"
    );
    assert_eq!(listed["snapshots"][0]["id"], backup[0]["snapshot"]);
}
