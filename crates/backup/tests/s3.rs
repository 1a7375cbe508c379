//! The backup repository on S3-compatible storage: a real moto server (PyPI `moto[server]`,
//! installed by `scripts/test`) started per test on a loopback port the kernel picks, with an
//! IAM user whose keys the repository signs with. Backups of SQLite and directory datastores
//! go to a bucket prefix, list, restore exactly and drill; Debian's restic reads the same
//! repository; wrong keys and a missing bucket are clear errors that never show a key.
//!
//! moto checks signatures only once told to (`/moto-api/reset-auth`), and then refuses every
//! correctly signed request whose query holds an encoded character (it canonicalises the
//! decoded query: `prefix=keys%2F` signed, `prefix=keys/` checked), which is every listing
//! rustic and restic make. So the backup tests run with moto's checking off, and the
//! wrong-key test turns it on after `init`: opening starts with a `HEAD config`, which moto
//! checks correctly, and refuses.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use wharf_backup::{
    BackupError, Datastore, Repo, RepoLocation, S3Credentials, Secret, Tools, drill, record_of,
};

const PASSWORD: &str = "repository-password-for-s3-tests";

/// Creates an IAM user allowed `s3:*`, its access key and the buckets named on the command
/// line, and prints the key pair.
const SETUP: &str = r#"
import json, sys, urllib.request
import boto3
endpoint = sys.argv[1]
session = boto3.session.Session(aws_access_key_id="setup", aws_secret_access_key="setup",
                                region_name="us-east-1")
iam = session.client("iam", endpoint_url=endpoint)
s3 = session.client("s3", endpoint_url=endpoint)
iam.create_user(UserName="wharf-backup")
iam.put_user_policy(UserName="wharf-backup", PolicyName="s3-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="wharf-backup")["AccessKey"]
for bucket in sys.argv[2:]:
    s3.create_bucket(Bucket=bucket)
print(key["AccessKeyId"], key["SecretAccessKey"])
"#;

/// Turns moto's authentication on: every later request must be signed with a known key.
const REQUIRE_SIGNATURES: &str = r#"
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/moto-api/reset-auth", data=b"0",
                                              headers={"Content-Type": "text/plain"})).read()
"#;

/// A moto server in S3 mode on a loopback port, stopped on drop.
struct Moto {
    child: Child,
    endpoint: String,
    key_id: String,
    secret: String,
}

impl Moto {
    /// Starts moto on a port the kernel picks (it prints the address once it listens), then
    /// creates `buckets` and the IAM key.
    fn start(buckets: &[&str]) -> Moto {
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto (pip install 'moto[server]'; scripts/test does)");
        // Owned from here on, so a failed setup still stops the server.
        let mut moto = Moto {
            child,
            endpoint: String::new(),
            key_id: String::new(),
            secret: String::new(),
        };
        moto.endpoint = listening_address(&mut moto.child);
        let out = python(SETUP, &moto.endpoint, buckets);
        let (key_id, secret) = out.trim().split_once(' ').expect("key id and secret");
        moto.key_id = key_id.to_owned();
        moto.secret = secret.to_owned();
        moto
    }

    /// From now on moto refuses requests not signed with a key it knows.
    fn require_signatures(&self) {
        python(REQUIRE_SIGNATURES, &self.endpoint, &[]);
    }

    fn credentials(&self) -> S3Credentials {
        S3Credentials::new(&self.key_id, Secret::new(&self.secret))
    }

    /// restic's string for `bucket/prefix` on this server.
    fn url(&self, path: &str) -> String {
        format!("s3:{}/{path}", self.endpoint)
    }

    fn location(&self, path: &str) -> RepoLocation {
        RepoLocation::parse(&self.url(path), Some(self.credentials())).unwrap()
    }

    /// Debian's restic against `path` with this server's keys in its environment.
    fn restic(&self, path: &str, cache: &Path, args: &[&str]) -> std::process::Output {
        Command::new("restic")
            .arg("-r")
            .arg(self.url(path))
            .args(args)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("RESTIC_CACHE_DIR", cache)
            .env("AWS_ACCESS_KEY_ID", &self.key_id)
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .output()
            .expect("run restic")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads moto's log until it says where it listens (`Running on http://127.0.0.1:PORT`),
/// within a deadline; the reader goes on draining the log so moto never blocks on it.
fn listening_address(child: &mut Child) -> String {
    let (tx, rx) = mpsc::channel();
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
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Some(address) = line.split("Running on ").nth(1) {
                    let _ = tx.send(address.trim().to_owned());
                }
            }
        });
    }
    rx.recv_timeout(Duration::from_secs(60))
        .expect("moto did not say where it listens within 60 s")
}

/// Runs a Python script with `endpoint` and `args`; its stdout.
fn python(script: &str, endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-c", script, endpoint])
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "moto setup failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wharf-backup-s3-test")
        .tempdir()
        .expect("temp dir")
}

fn assert_no_keys(moto: &Moto, text: &str) {
    assert!(!text.contains(&moto.secret), "secret key shown: {text}");
    assert!(!text.contains(&moto.key_id), "access key id shown: {text}");
}

#[test]
fn sqlite_and_directory_backups_on_s3_restore_exactly_drill_and_restic_reads_them() {
    let moto = Moto::start(&["wharf-backups"]);
    let tools = Tools::from_env();
    let dir = temp();
    let location = moto.location("wharf-backups/prod/shop");
    let repo = Repo::open_or_init_at(&location, &Secret::new(PASSWORD)).unwrap();
    assert_no_keys(&moto, &format!("{repo:?} {location:?} {location}"));

    let db = dir.path().join("app.sqlite");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, b BLOB);
         INSERT INTO t VALUES (1, 'a', x'00'), (2, NULL, NULL), (3, 'c', zeroblob(70000));",
    )
    .unwrap();
    let sqlite = Datastore::Sqlite(db.clone());
    let lite = repo.backup("shop", "lite", &sqlite, &tools).unwrap();
    let recorded = repo.record(&lite).unwrap();
    conn.execute_batch("DELETE FROM t WHERE id = 1; CREATE TABLE extra (x);")
        .unwrap();
    assert_ne!(record_of(&sqlite, &tools).unwrap(), recorded);
    repo.restore(&lite, &sqlite, &tools).unwrap();
    assert_eq!(record_of(&sqlite, &tools).unwrap(), recorded);
    let report = drill(&repo, &lite, &tools).unwrap();
    assert!(report.passed(), "{:#?}", report.checks);

    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("a.txt"), "alpha").unwrap();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(files.join("sub/big.bin"), &big).unwrap();
    let directory = Datastore::Directory(files.clone());
    let uploads = repo.backup("shop", "uploads", &directory, &tools).unwrap();
    std::fs::write(files.join("a.txt"), "changed").unwrap();
    std::fs::write(files.join("added.txt"), "new").unwrap();
    repo.restore(&uploads, &directory, &tools).unwrap();
    assert_eq!(
        std::fs::read_to_string(files.join("a.txt")).unwrap(),
        "alpha"
    );
    assert!(!files.join("added.txt").exists());
    assert_eq!(std::fs::read(files.join("sub/big.bin")).unwrap(), big);
    assert!(drill(&repo, &uploads, &tools).unwrap().passed());
    repo.check(true).unwrap();

    // Opened again (now it exists): the same two backups, and the key decrypts them.
    let again = Repo::open_or_init_at(&location, &Secret::new(PASSWORD)).unwrap();
    let listed: Vec<String> = again
        .backups(Some("shop"), None)
        .unwrap()
        .into_iter()
        .map(|b| b.service)
        .collect();
    assert_eq!(listed, ["lite", "uploads"]);
    assert_eq!(
        again.verify_key().unwrap().snapshot,
        Some(uploads.id.clone())
    );

    // Debian's restic reads the same bucket prefix with the same keys.
    let cache = dir.path().join("restic-cache");
    let out = moto.restic(
        "wharf-backups/prod/shop",
        &cache,
        &["snapshots", "--json", "--no-lock"],
    );
    assert!(
        out.status.success(),
        "restic snapshots: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snapshots: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ids: Vec<&str> = snapshots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut expected = [lite.id.as_str(), uploads.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let target = dir.path().join("restic-restore");
    let out = moto.restic(
        "wharf-backups/prod/shop",
        &cache,
        &[
            "restore",
            &uploads.id,
            "--target",
            target.to_str().unwrap(),
            "--no-lock",
        ],
    );
    assert!(
        out.status.success(),
        "restic restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let restored = target.join("shop/uploads/data");
    assert_eq!(std::fs::read(restored.join("sub/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read_to_string(restored.join("a.txt")).unwrap(),
        "alpha"
    );
}

#[test]
fn a_wrong_secret_key_is_a_clear_error_that_never_shows_the_keys() {
    let moto = Moto::start(&["wharf-backups"]);
    let location = moto.location("wharf-backups/repo");
    Repo::init_at(&location, &Secret::new(PASSWORD)).unwrap();
    moto.require_signatures();

    let wrong_secret = "wrong-secret-access-key-0123456789";
    let cases = [
        S3Credentials::new(&moto.key_id, Secret::new(wrong_secret)),
        S3Credentials::new("AKIAUNKNOWNKEYID0000", Secret::new(&moto.secret)),
    ];
    for credentials in cases {
        let wrong = RepoLocation::parse(&moto.url("wharf-backups/repo"), Some(credentials));
        let err = Repo::open_at(&wrong.unwrap(), &Secret::new(PASSWORD)).unwrap_err();
        assert!(matches!(err, BackupError::AccessDenied { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("refused the credentials"), "{text}");
        assert!(text.contains(&moto.url("wharf-backups/repo")), "{text}");
        for shown in [text, format!("{err:?}")] {
            assert_no_keys(&moto, &shown);
            assert!(!shown.contains(wrong_secret), "{shown}");
        }
    }
}

/// A key that may read objects but not list the bucket (here: moto refusing every listing
/// once it checks signatures, the answer a policy without `s3:ListBucket` gets from AWS) is
/// named as a refused listing, not as the wrong repository password rustic_core would report.
#[test]
fn a_refused_listing_is_named_not_reported_as_a_wrong_password() {
    let moto = Moto::start(&["wharf-backups"]);
    let location = moto.location("wharf-backups/repo");
    Repo::init_at(&location, &Secret::new(PASSWORD)).unwrap();
    moto.require_signatures();
    let err = Repo::open_at(&location, &Secret::new(PASSWORD)).unwrap_err();
    assert!(matches!(err, BackupError::AccessDenied { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("s3:ListBucket"), "{text}");
    assert_no_keys(&moto, &format!("{text} {err:?}"));
}

#[test]
fn a_wrong_repository_password_on_s3_is_a_wrong_password_error() {
    let moto = Moto::start(&["wharf-backups"]);
    let location = moto.location("wharf-backups/repo");
    Repo::init_at(&location, &Secret::new(PASSWORD)).unwrap();
    Repo::open_at(&location, &Secret::new(PASSWORD)).unwrap();
    let err = Repo::open_at(&location, &Secret::new("not the password")).unwrap_err();
    assert!(matches!(err, BackupError::WrongPassword { .. }), "{err:?}");
    assert!(!err.to_string().contains("not the password"), "{err}");
}

#[test]
fn a_missing_bucket_is_named_and_an_empty_prefix_says_no_repository() {
    let moto = Moto::start(&["other-bucket"]);
    let location = moto.location("no-such-bucket/repo");
    let err = Repo::open_or_init_at(&location, &Secret::new(PASSWORD)).unwrap_err();
    assert!(
        matches!(&err, BackupError::NoSuchBucket { bucket, .. } if bucket == "no-such-bucket"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("`no-such-bucket` does not exist"), "{text}");
    assert_no_keys(&moto, &format!("{text} {err:?}"));
    // Opening (not creating) where a bucket holds no repository says so, naming the place.
    let other = moto.location("other-bucket/repo");
    let err = Repo::open_at(&other, &Secret::new(PASSWORD)).unwrap_err();
    assert!(matches!(err, BackupError::Repository { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&moto.url("other-bucket/repo")),
        "{err}"
    );
    assert_no_keys(&moto, &format!("{err} {err:?}"));
}

#[test]
fn an_unreachable_s3_endpoint_is_a_clear_error_naming_it() {
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = format!("s3:http://127.0.0.1:{port}/wharf-backups/repo");
    let keys = S3Credentials::new("AKIAUNREACHABLE00000", Secret::new("unreachable-secret"));
    let Ok(RepoLocation::S3(s3)) = RepoLocation::parse(&text, Some(keys)) else {
        panic!("{text} is an S3 location")
    };
    // No retries: the default rides out a blip for about a minute before giving up.
    let location = RepoLocation::S3(s3.with_retries(0));
    let err = Repo::open_or_init_at(&location, &Secret::new(PASSWORD)).unwrap_err();
    assert!(matches!(err, BackupError::Unreachable { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains(&text) && shown.contains("could not reach"),
        "{shown}"
    );
    assert!(
        shown.to_lowercase().contains("connection refused"),
        "{shown}"
    );
    assert!(!shown.contains("unreachable-secret") && !shown.contains("AKIAUNREACHABLE"));
}

#[test]
fn stored_bytes_counts_every_repository_file_in_a_folder_and_on_s3() {
    let moto = Moto::start(&["wharf-backups"]);
    let tools = Tools::from_env();
    let dir = temp();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let content: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_be_bytes()).collect();
    std::fs::write(files.join("data.bin"), content).unwrap();
    let store = Datastore::Directory(files);

    let folder = dir.path().join("repo");
    let local = Repo::open_or_init(&folder, &Secret::new(PASSWORD)).unwrap();
    local.backup("shop", "files", &store, &tools).unwrap();
    let config = std::fs::metadata(folder.join("config")).unwrap().len();
    assert_eq!(local.stored_bytes().unwrap() + config, Repo::size(&folder));

    let s3 = Repo::init_at(&moto.location("wharf-backups/r"), &Secret::new(PASSWORD)).unwrap();
    let empty = s3.stored_bytes().unwrap();
    s3.backup("shop", "files", &store, &tools).unwrap();
    let reopened = Repo::open_at(s3.location(), &Secret::new(PASSWORD)).unwrap();
    let full = reopened.stored_bytes().unwrap();
    assert!(empty > 0 && full > empty, "{empty} then {full}");
}
