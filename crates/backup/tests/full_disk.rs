//! A repository on a full disk: a real tmpfs of 2 MiB mounted for the test (the suite runs as
//! root), a directory of incompressible data several times larger backed up into it. The
//! backup fails with an error that says the disk is full, and no snapshot is left that would
//! list as a good backup; a backup that fits still works afterwards.

use std::path::Path;
use std::process::Command;

use wharf_backup::{Datastore, Repo, Secret, Tools};

/// A tmpfs of `size` at `dir`, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test suite runs as root): {status}"
        );
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Bytes no compressor shrinks (a xorshift stream).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_backup() {
    let tools = Tools::from_env();
    let dir = tempfile::tempdir().unwrap();
    let _disk = Tmpfs::mount(&dir.path().join("disk"), "2m");
    let password = Secret::new("full-disk-test-password");
    let repo = Repo::init(&dir.path().join("disk/repo"), &password).unwrap();

    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join("data.bin"), noise(8 << 20, 7)).unwrap();
    let error = repo
        .backup("shop", "files", &Datastore::Directory(big), &tools)
        .expect_err("8 MiB cannot fit on a 2 MiB disk");
    let message = error.to_string().to_lowercase();
    assert!(
        message.contains("no space") || message.contains("full"),
        "the error says the disk is full: {error}"
    );
    let repo = Repo::open(&dir.path().join("disk/repo"), &password).unwrap();
    assert!(
        repo.backups(Some("shop"), None).unwrap().is_empty(),
        "no half-written backup is listed"
    );

    // Once data fits, backups work on the same repository.
    let small = dir.path().join("small");
    std::fs::create_dir_all(&small).unwrap();
    std::fs::write(small.join("a.txt"), "fits").unwrap();
    repo.backup("shop", "small", &Datastore::Directory(small), &tools)
        .unwrap();
    assert_eq!(repo.backups(Some("shop"), None).unwrap().len(), 1);
}
