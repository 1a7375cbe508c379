//! Shared by the backup crate's tests.

use std::path::Path;
use std::process::{Command, Output};

/// Debian's `restic` on the repository at `repo` (its cache beside it), with `password`.
pub fn restic(repo: &Path, password: &str, args: &[&str]) -> Output {
    Command::new("restic")
        .arg("-r")
        .arg(repo)
        .args(args)
        .env("RESTIC_PASSWORD", password)
        .env("RESTIC_CACHE_DIR", repo.join("..").join("restic-cache"))
        .output()
        .expect("run restic")
}
