//! wharf-secrets against a real state database in a temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use wharf_secrets::{
    KeySource, MASTER_KEY_ENV, MASTER_KEY_FILE, MasterKey, Origin, Rotation, SecretValue, Secrets,
    SecretsError, generate, history, list, rotation,
};
use wharf_store::Store;

fn value(text: &str) -> SecretValue {
    SecretValue::new(text.as_bytes().to_vec())
}

fn key_from(hex: &str) -> MasterKey {
    MasterKey::load(Path::new("/nonexistent"), Some(hex), false)
        .unwrap()
        .0
}

fn same_key(key: &MasterKey) -> MasterKey {
    key_from(key.to_hex().expose_str().unwrap())
}

fn setup() -> (tempfile::TempDir, Store, Secrets, MasterKey) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let key = MasterKey::generate();
    let secrets = Secrets::unlock(&mut store, same_key(&key)).unwrap();
    (dir, store, secrets, key)
}

fn put(secrets: &Secrets, store: &mut Store, name: &str, text: &str, origin: Origin) -> u32 {
    secrets
        .put(store, name, &value(text), "ops", Some("test"), origin)
        .unwrap()
        .version
}

/// Every file under `dir` with its length and SHA-256 (short to print when they differ).
fn digests(dir: &Path) -> Vec<(String, usize, String)> {
    use sha2::Digest;
    files(dir)
        .into_iter()
        .map(|(path, bytes)| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                bytes.len(),
                format!("{:x}", sha2::Sha256::digest(&bytes)),
            )
        })
        .collect()
}

/// Every file under `dir`, with its bytes.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    out.sort();
    out
}

fn assert_nowhere(dir: &Path, needles: &[&str]) {
    let files = files(dir);
    assert!(files.iter().any(|(p, _)| p.ends_with("state.db")));
    for (path, bytes) in &files {
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn values_round_trip_through_versions_and_history() {
    let (_dir, mut store, secrets, _key) = setup();
    assert_eq!(put(&secrets, &mut store, "db", "one", Origin::Set), 1);
    assert_eq!(put(&secrets, &mut store, "db", "two", Origin::Rotate), 2);
    assert_eq!(put(&secrets, &mut store, "api", "ä€ bytes", Origin::Set), 1);

    let (info, current) = secrets.current(&store, "db").unwrap().unwrap();
    assert_eq!((info.version, current.expose()), (2, &b"two"[..]));
    assert_eq!(info.origin, "rotate");
    assert_eq!(info.actor, "ops");
    assert_eq!(info.reason.as_deref(), Some("test"));
    assert!(info.created_at.parse::<jiff::Timestamp>().is_ok());
    assert_eq!(secrets.value(&store, "db", 1).unwrap(), value("one"));
    assert_eq!(
        secrets
            .value(&store, "api", 1)
            .unwrap()
            .expose_str()
            .unwrap(),
        "ä€ bytes"
    );
    assert!(secrets.current(&store, "nope").unwrap().is_none());

    let listed = list(&store).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|v| (v.name.as_str(), v.version))
            .collect::<Vec<_>>(),
        vec![("api", 1), ("db", 2)]
    );
    let versions = history(&store, "db").unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(versions[0].fingerprint, secrets.fingerprint(&value("one")));
    assert_eq!(versions[0].fingerprint.len(), 32);
    assert_ne!(versions[0].fingerprint, versions[1].fingerprint);
    assert!(history(&store, "nope").unwrap().is_empty());
}

#[test]
fn rollback_is_a_new_version_with_the_old_value() {
    let (_dir, mut store, secrets, _key) = setup();
    put(&secrets, &mut store, "db", "first", Origin::Set);
    put(&secrets, &mut store, "db", "second", Origin::Rotate);
    let info = secrets
        .rollback(&mut store, "db", 1, "alice", None)
        .unwrap();
    assert_eq!((info.version, info.origin.as_str()), (3, "rollback:1"));
    assert_eq!(info.fingerprint, secrets.fingerprint(&value("first")));
    let (_, current) = secrets.current(&store, "db").unwrap().unwrap();
    assert_eq!(current, value("first"));

    let err = secrets
        .rollback(&mut store, "db", 9, "alice", None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecretsError::UnknownVersion {
                version: 9,
                latest: 3,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "secret `db` has no version 9 (it has 1 to 3)"
    );
    assert!(matches!(
        secrets.rollback(&mut store, "nope", 1, "alice", None),
        Err(SecretsError::Unknown(_))
    ));
    assert_eq!(history(&store, "db").unwrap().len(), 3);
}

#[test]
fn rekey_keeps_every_secret_readable_and_refuses_the_old_key() {
    let (dir, mut store, secrets, old) = setup();
    for (name, text) in [("a", "alpha"), ("b", "bravo"), ("a", "alpha-2")] {
        put(&secrets, &mut store, name, text, Origin::Set);
    }
    let before = history(&store, "a").unwrap();
    let fingerprint = secrets.fingerprint(&value("bravo"));
    let new = MasterKey::generate();
    let secrets = secrets.rekey(&mut store, same_key(&new)).unwrap();

    assert_eq!(history(&store, "a").unwrap(), before);
    assert_eq!(secrets.fingerprint(&value("bravo")), fingerprint);
    assert_eq!(secrets.value(&store, "a", 1).unwrap(), value("alpha"));
    assert_eq!(secrets.value(&store, "a", 2).unwrap(), value("alpha-2"));
    assert_eq!(secrets.value(&store, "b", 1).unwrap(), value("bravo"));
    put(&secrets, &mut store, "b", "bravo-2", Origin::Rotate);
    drop(store);

    let mut store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        Secrets::unlock(&mut store, old),
        Err(SecretsError::WrongKey)
    ));
    let secrets = Secrets::unlock(&mut store, new).unwrap();
    assert_eq!(secrets.fingerprint(&value("bravo")), fingerprint);
    assert_eq!(secrets.value(&store, "b", 2).unwrap(), value("bravo-2"));
    assert_eq!(secrets.value(&store, "a", 1).unwrap(), value("alpha"));
}

#[test]
fn a_wrong_key_is_refused_and_changes_no_byte_on_disk() {
    let (dir, mut store, secrets, _key) = setup();
    put(&secrets, &mut store, "db", "hunter2", Origin::Set);
    drop(store);
    // Opening the store rewrites its schema version (the store's own behaviour), so the
    // snapshot is taken after opening: the database and its WAL, not the shared-memory
    // index, which readers update too.
    let mut store = Store::open(dir.path()).unwrap();
    let durable = |dir: &Path| {
        let mut d = digests(dir);
        d.retain(|(name, _, _)| !name.ends_with("-shm"));
        d
    };
    let before = durable(dir.path());
    let meta_before = (
        store.meta("secrets.check").unwrap(),
        store.meta("secrets.fingerprint_key").unwrap(),
    );
    assert!(before.iter().any(|(name, _, _)| name.ends_with("-wal")));

    let err = Secrets::unlock(&mut store, MasterKey::generate()).unwrap_err();
    assert!(matches!(err, SecretsError::WrongKey));
    assert!(err.to_string().contains("does not open"));
    assert_eq!(durable(dir.path()), before);
    let meta_after = (
        store.meta("secrets.check").unwrap(),
        store.meta("secrets.fingerprint_key").unwrap(),
    );
    assert_eq!(meta_after, meta_before);
    assert_eq!(history(&store, "db").unwrap().len(), 1);
    drop(store);
}

#[test]
fn no_plaintext_reaches_any_file_of_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (key, source) = MasterKey::load(dir.path(), None, true).unwrap();
    assert_eq!(source, KeySource::Created(dir.path().join(MASTER_KEY_FILE)));
    let mut store = Store::open(dir.path()).unwrap();
    let secrets = Secrets::unlock(&mut store, key).unwrap();
    let canaries = [
        "canary-postgres-Zq81xVv0pLw",
        "canary-stripe-sk_live_93KfQ2",
        "canary-rotated-Hh4Tz7Ym2Qe",
    ];
    put(&secrets, &mut store, "db", canaries[0], Origin::Set);
    put(&secrets, &mut store, "stripe", canaries[1], Origin::Set);
    put(&secrets, &mut store, "db", canaries[2], Origin::Rotate);
    secrets.rollback(&mut store, "db", 1, "ops", None).unwrap();
    // While the connection is open the WAL and shared-memory files exist too.
    assert_nowhere(dir.path(), &canaries);

    let new = MasterKey::generate();
    new.write_file(dir.path()).unwrap();
    let secrets = secrets.rekey(&mut store, same_key(&new)).unwrap();
    assert_nowhere(dir.path(), &canaries);
    assert_eq!(secrets.value(&store, "db", 3).unwrap(), value(canaries[0]));
    drop(store);
    assert_nowhere(dir.path(), &canaries);

    let (reloaded, source) = MasterKey::load(dir.path(), None, false).unwrap();
    assert_eq!(source, KeySource::File(dir.path().join(MASTER_KEY_FILE)));
    assert_eq!(reloaded.to_hex(), new.to_hex());
}

fn tamper(dir: &Path, column: &str) {
    let conn = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let blob: Vec<u8> = conn
        .query_row(
            &format!("SELECT {column} FROM secret_versions WHERE name = 'db' AND version = 1"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    let mut blob = blob;
    blob[3] ^= 0x01;
    conn.execute(
        &format!("UPDATE secret_versions SET {column} = ?1 WHERE name = 'db' AND version = 1"),
        [blob],
    )
    .unwrap();
}

#[test]
fn an_altered_row_is_corrupt_not_a_wrong_key() {
    for column in ["ciphertext", "nonce", "wrapped_key", "key_nonce"] {
        let (dir, mut store, secrets, _key) = setup();
        put(&secrets, &mut store, "db", "value", Origin::Set);
        put(&secrets, &mut store, "db", "value-2", Origin::Set);
        tamper(dir.path(), column);
        let err = secrets.value(&store, "db", 1).unwrap_err();
        assert!(
            matches!(&err, SecretsError::Corrupt { name, version: 1 } if name == "db"),
            "{column}: {err}"
        );
        assert_eq!(secrets.value(&store, "db", 2).unwrap(), value("value-2"));
        if column == "wrapped_key" || column == "key_nonce" {
            // A rekey refuses to carry an altered data key over.
            let err = secrets
                .rekey(&mut store, MasterKey::generate())
                .unwrap_err();
            assert!(matches!(err, SecretsError::Corrupt { .. }), "{err}");
        } else {
            // A rekey never decrypts values, so it carries the altered value over as it is.
            let secrets = secrets.rekey(&mut store, MasterKey::generate()).unwrap();
            assert!(matches!(
                secrets.value(&store, "db", 1),
                Err(SecretsError::Corrupt { version: 1, .. })
            ));
        }
    }
}

#[test]
fn a_row_moved_to_another_version_does_not_decrypt() {
    let (dir, mut store, secrets, _key) = setup();
    put(&secrets, &mut store, "db", "one", Origin::Set);
    put(&secrets, &mut store, "db", "two", Origin::Set);
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute(
        "UPDATE secret_versions SET (wrapped_key, key_nonce, nonce, ciphertext) =
           (SELECT wrapped_key, key_nonce, nonce, ciphertext FROM secret_versions
            WHERE name = 'db' AND version = 1)
         WHERE name = 'db' AND version = 2",
        [],
    )
    .unwrap();
    assert!(matches!(
        secrets.current(&store, "db"),
        Err(SecretsError::Corrupt { version: 2, .. })
    ));
}

#[test]
fn the_key_file_must_have_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MASTER_KEY_FILE);
    let (created, source) = MasterKey::load(dir.path(), None, true).unwrap();
    assert_eq!(source, KeySource::Created(path.clone()));
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.ends_with('\n'));
    assert_eq!(created.to_hex().expose_str().unwrap(), text.trim_end());

    let (again, source) = MasterKey::load(dir.path(), None, true).unwrap();
    assert_eq!(source, KeySource::File(path.clone()));
    assert_eq!(again.to_hex(), created.to_hex());

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = MasterKey::load(dir.path(), None, true).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("0644") && message.contains("0600"),
        "{message}"
    );
    assert!(!message.contains(text.trim_end()));

    // The environment wins over the file, whatever its mode.
    let (_, source) = MasterKey::load(dir.path(), Some(text.trim_end()), false).unwrap();
    assert_eq!(source, KeySource::Env);
}

#[test]
fn a_bad_key_text_is_explained_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["topsecret-not-hex", "abcdef", &"x".repeat(64)] {
        let err = MasterKey::load(dir.path(), Some(bad), true).unwrap_err();
        assert!(
            matches!(&err, SecretsError::BadKey { source_name, .. } if source_name == MASTER_KEY_ENV)
        );
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("64 hexadecimal"), "{shown}");
        assert!(!shown.contains(bad), "{shown}");
    }
    // Nothing was created for a bad environment value.
    assert!(!dir.path().join(MASTER_KEY_FILE).exists());

    let bad_file = dir.path().join(MASTER_KEY_FILE);
    std::fs::write(&bad_file, "0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&bad_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = MasterKey::load(dir.path(), None, true).unwrap_err();
    assert!(err.to_string().contains(&bad_file.display().to_string()));
    assert!(!err.to_string().contains("0123456789abcdef"));

    let empty = tempfile::tempdir().unwrap();
    let err = MasterKey::load(empty.path(), None, false).unwrap_err();
    assert!(err.to_string().starts_with(MASTER_KEY_ENV), "{err}");
    assert!(!empty.path().join(MASTER_KEY_FILE).exists());
}

#[test]
fn nothing_shows_a_value_or_key() {
    let (_dir, mut store, secrets, key) = setup();
    let secret = value("visible-if-leaked");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    let hex = key.to_hex();
    assert!(!format!("{key:?} {secrets:?}").contains(hex.expose_str().unwrap()));
    let info = secrets
        .put(&mut store, "x", &secret, "ops", None, Origin::Set)
        .unwrap();
    assert!(!format!("{info:?}").contains("visible-if-leaked"));
    assert!(
        secrets
            .put(&mut store, "", &secret, "ops", None, Origin::Set)
            .is_err()
    );
}

#[test]
fn generated_values_use_every_character_of_the_alphabet() {
    let v = generate(3000, "abcabc").unwrap();
    let text = v.expose_str().unwrap();
    assert_eq!(text.len(), 3000);
    for c in ['a', 'b', 'c'] {
        let n = text.chars().filter(|&x| x == c).count();
        // Expected 1000 each; 800 is more than 8 standard deviations away.
        assert!(n > 800, "{c}: {n}");
    }
    let greek = generate(200, "αβ").unwrap();
    let greek = greek.expose_str().unwrap();
    assert_eq!(greek.chars().count(), 200);
    assert!(greek.contains('α') && greek.contains('β'));
    assert_ne!(generate(32, "01").unwrap(), generate(32, "01").unwrap());

    for (length, alphabet) in [(10, "aaaa"), (10, ""), (0, "ab")] {
        assert!(matches!(
            generate(length, alphabet),
            Err(SecretsError::Invalid(_))
        ));
    }
}

#[test]
fn rotation_status_against_max_age() {
    let day = 86_400;
    let t = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
    let days = |d: u64| Some(Duration::from_secs(d * day as u64));
    assert_eq!(rotation(t(0), None, t(999 * day)), Rotation::NoPolicy);
    // 90 days: the window is 9 days.
    assert_eq!(
        rotation(t(0), days(90), t(0)),
        Rotation::Ok { due_in_days: 90 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(80 * day)),
        Rotation::Ok { due_in_days: 10 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(81 * day)),
        Rotation::DueSoon { due_in_days: 9 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(90 * day - 60)),
        Rotation::DueSoon { due_in_days: 0 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(90 * day)),
        Rotation::DueSoon { due_in_days: 0 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(90 * day + 60)),
        Rotation::Overdue { by_days: 1 }
    );
    assert_eq!(
        rotation(t(0), days(90), t(100 * day)),
        Rotation::Overdue { by_days: 10 }
    );
    // 3 days: a tenth is under a day, so the window is one day.
    assert_eq!(
        rotation(t(0), days(3), t(day)),
        Rotation::Ok { due_in_days: 2 }
    );
    assert_eq!(
        rotation(t(0), days(3), t(2 * day + 1)),
        Rotation::DueSoon { due_in_days: 0 }
    );
    assert_eq!(
        rotation(t(0), days(3), t(2 * day)),
        Rotation::DueSoon { due_in_days: 1 }
    );
}
