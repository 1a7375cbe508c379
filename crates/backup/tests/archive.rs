//! wharf's own archiver against rustic_core's and restic: the same file is cut into the very
//! blobs rustic_core 0.13 cuts (so a wharf backup dedups against earlier ones and against a
//! rustic backup of the same bytes), each stored once, in packs restic checks byte for byte
//! and restores.

mod common;

use std::path::{Path, PathBuf};

use rustic_backend::BackendOptions;
use rustic_core::repofile::SnapshotFile;
use rustic_core::{BackupOptions, Credentials, PathList, Repository, RepositoryOptions};
use wharf_backup::{Datastore, Repo, Secret, Tools};

const PASSWORD: &str = "repository-password-for-archive-tests";

/// Deterministic bytes that do not compress (xorshift64*).
fn noise(len: usize, mut state: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// 30 MiB shaped like a dump: noise (cuts where the content says, about 1 MiB apart), a long
/// run of blanks (no cut: 8 MiB chunks, which compress), text lines, noise again.
fn dump_like() -> Vec<u8> {
    let mut data = noise(12 << 20, 7);
    data.extend(std::iter::repeat_n(b' ', 10 << 20));
    let mut line = 0u64;
    while data.len() < 26 << 20 {
        data.extend_from_slice(
            format!(
                "{line}\t{}\t{}\n",
                line * 7919 % 1000,
                "x".repeat((line % 90) as usize)
            )
            .as_bytes(),
        );
        line += 1;
    }
    data.extend(noise(4 << 20, 11));
    data
}

fn rustic(dir: &Path) -> Repository<rustic_core::OpenStatus> {
    let backends = BackendOptions::default()
        .repository(format!("local:{}", dir.display()))
        .to_backends()
        .expect("backends");
    Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .expect("repository")
        .open(&Credentials::password(PASSWORD))
        .expect("open")
}

fn content(
    repo: &Repository<rustic_core::IndexedFullStatus>,
    snap: &SnapshotFile,
    path: &str,
) -> Vec<String> {
    let node = repo
        .node_from_snapshot_and_path(snap, path)
        .unwrap_or_else(|e| panic!("{path} in the snapshot: {e}"));
    node.content
        .expect("a file's content")
        .iter()
        .map(|id| id.to_string())
        .collect()
}

#[test]
fn a_file_is_cut_into_rustic_cores_blobs_each_stored_once_and_restic_checks_and_restores_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let data = dump_like();
    std::fs::write(files.join("dump.bin"), &data).unwrap();
    let repo_dir = dir.path().join("repo");
    let repo = Repo::init(&repo_dir, &Secret::new(PASSWORD)).unwrap();
    let tools = Tools::from_env();

    let first = repo
        .backup("s", "files", &Datastore::Directory(files.clone()), &tools)
        .unwrap();
    assert_eq!(
        first.bytes as usize,
        data.len() + record_len(&repo_dir, &first.id)
    );
    assert!(
        first.added >= data.len() as u64,
        "a first backup stores its data"
    );

    // rustic_core's own archiver, over the same bytes, finds every blob already stored: the
    // cuts are the same. (A wrong cut anywhere makes its blob, and the next, new.)
    let indexed = rustic(&repo_dir).to_indexed().unwrap();
    let path = files.join("dump.bin");
    let theirs = indexed
        .backup(
            &BackupOptions::default(),
            &PathList::from_string(path.to_str().unwrap()).unwrap(),
            SnapshotFile::default(),
        )
        .unwrap();
    let summary = theirs.summary.as_ref().unwrap();
    assert_eq!(summary.total_bytes_processed, data.len() as u64);
    assert_eq!(
        summary.data_added_files, 0,
        "rustic_core cut the file into blobs wharf did not store"
    );
    let indexed = rustic(&repo_dir).to_indexed().unwrap();
    let ours = indexed.get_snapshot_from_str(&first.id, |_| true).unwrap();
    let wharf_blobs = content(&indexed, &ours, "s/files/data/dump.bin");
    let rustic_blobs = content(&indexed, &theirs, path.to_str().unwrap());
    assert_eq!(wharf_blobs, rustic_blobs);
    assert!(
        wharf_blobs.len() >= 8,
        "noise cuts every ~1 MiB and blanks every 8 MiB: {} blobs",
        wharf_blobs.len()
    );

    // The same data again adds nothing but the new record's blob and the trees above it.
    let second = repo
        .backup("s", "files", &Datastore::Directory(files.clone()), &tools)
        .unwrap();
    assert!(
        second.added < 64 * 1024,
        "an unchanged file was stored again: {} bytes added",
        second.added
    );

    // restic reads every pack wharf wrote (compressed blank runs, uncompressed noise) and
    // restores the file byte for byte.
    let target = check_and_restore(&repo_dir, &first.id);
    let back = std::fs::read(target.join("s/files/data/dump.bin")).unwrap();
    assert!(back == data, "restic restored different bytes");
}

#[test]
fn many_small_files_fill_packs_of_at_most_ten_thousand_blobs_that_restic_reads() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("files");
    for folder in 0..12 {
        let at = files.join(format!("f{folder:02}"));
        std::fs::create_dir_all(&at).unwrap();
        for n in 0..1000 {
            std::fs::write(at.join(format!("{n}.txt")), format!("file {folder}/{n}\n")).unwrap();
        }
    }
    let repo_dir = dir.path().join("repo");
    let repo = Repo::init(&repo_dir, &Secret::new(PASSWORD)).unwrap();
    let backup = repo
        .backup(
            "s",
            "many",
            &Datastore::Directory(files.clone()),
            &Tools::from_env(),
        )
        .unwrap();
    // 12,000 distinct small files are 12,000 blobs: more than one pack holds.
    let packs = walkdir::WalkDir::new(repo_dir.join("data"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .count();
    assert!(
        packs >= 3,
        "{packs} packs: two of data at least, one of trees"
    );
    let target = check_and_restore(&repo_dir, &backup.id);
    assert_eq!(
        std::fs::read_to_string(target.join("s/many/data/f11/999.txt")).unwrap(),
        "file 11/999\n"
    );
}

/// `restic check --read-data` passes on the repository, and `restic restore` of `snapshot`
/// succeeds; returns where it restored to.
fn check_and_restore(repo_dir: &Path, snapshot: &str) -> PathBuf {
    let check = restic(repo_dir, &["check", "--read-data"]);
    assert!(
        check.status.success(),
        "restic check --read-data: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let target = repo_dir.join("..").join("restored");
    let restored = restic(
        repo_dir,
        &["restore", snapshot, "--target", target.to_str().unwrap()],
    );
    assert!(
        restored.status.success(),
        "restic restore: {}",
        String::from_utf8_lossy(&restored.stderr)
    );
    target
}

/// The size of the backup's record.json, as restic lists it.
fn record_len(repo_dir: &Path, snapshot: &str) -> usize {
    let out = restic(
        repo_dir,
        &["ls", "--json", snapshot, "/s/files/record.json"],
    );
    assert!(
        out.status.success(),
        "restic ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|v| v["path"] == "/s/files/record.json")
        .and_then(|v| v["size"].as_u64())
        .expect("record.json listed with its size") as usize
}

fn restic(repo: &Path, args: &[&str]) -> std::process::Output {
    common::restic(repo, PASSWORD, args)
}
