//! Drives wharf-backup for `scripts/bench/backup.sh`: one backup of the datastore at
//! `$WHARF_BENCH_URL` (kind `$WHARF_BENCH_KIND`, default postgres) into the repository at
//! `$WHARF_BENCH_REPO` (created when missing, password `$WHARF_BENCH_PASSWORD`); prints
//! `seconds bytes added` on one line. Not installed; benchmarks only.

use std::time::Instant;

use wharf_backup::{Datastore, DatastoreKind, Repo, Secret, Tools};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    let kind = match std::env::var("WHARF_BENCH_KIND").as_deref() {
        Ok("mariadb") => DatastoreKind::Mariadb,
        Ok("redis") => DatastoreKind::Redis,
        _ => DatastoreKind::Postgres,
    };
    let store = Datastore::from_url(kind, &Secret::new(var("WHARF_BENCH_URL")?))?;
    let password = Secret::new(var("WHARF_BENCH_PASSWORD")?);
    let repo = Repo::open_or_init(var("WHARF_BENCH_REPO")?.as_ref(), &password)?;
    let started = Instant::now();
    let backup = repo.backup("bench", "db", &store, &Tools::from_env())?;
    println!(
        "{:.3} {} {}",
        started.elapsed().as_secs_f64(),
        backup.bytes,
        backup.added
    );
    Ok(())
}
