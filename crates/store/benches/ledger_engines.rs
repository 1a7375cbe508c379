//! Durable ledger appends on SQLite and on PostgreSQL in one run, side by side with the ratio:
//! single appends (one transaction each) and batches of 100 (one transaction per batch), on a
//! SQLite file in a temp dir (WAL, `synchronous = FULL`) and on a PostgreSQL server started
//! for the run on loopback with its default durability (`fsync = on`, and the store's
//! `synchronous_commit = on`). Both write to the same disk.
//!
//! Run: `cargo bench -p wharf-store --bench ledger_engines` or `scripts/bench/store-pg.sh`.
//! `WHARF_BENCH_ROUNDS` sets how many timed rounds each figure takes the median of (default 3),
//! `WHARF_BENCH_SINGLES` how many single appends per round (default 500), and
//! `WHARF_BENCH_BATCHES` how many batches of 100 per round (default 50).

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wharf_ledger::{Action, Ledger, NewEntry};
use wharf_store::testing::{PgServer, TestState};

fn entry(i: u64) -> NewEntry {
    let action: Action = "deploy.step".parse().expect("valid action");
    let time = jiff::Timestamp::from_second(1_700_000_000 + i as i64).expect("valid time");
    let details = json!({ "service": "web", "step": i % 7, "image": "registry/web:1.2.3" });
    NewEntry::new(time, "ops@host", action, format!("web-{}", i % 5), details).expect("valid entry")
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Appends/s over `rounds` rounds (the median), each appending `count` entries in batches of
/// `batch` (1: one append per entry).
fn appends_per_second(state: &TestState, rounds: u64, count: u64, batch: u64) -> f64 {
    let mut ledger = Ledger::new(state.open());
    let mut next = ledger.size().expect("size");
    // Warm up: connection, prepared statements, the first pages of the tables.
    ledger
        .append_batch((next..next + 100).map(entry).collect())
        .expect("append");
    next += 100;
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..count / batch {
                if batch == 1 {
                    ledger.append(entry(next)).expect("append");
                } else {
                    ledger
                        .append_batch((next..next + batch).map(entry).collect())
                        .expect("append batch");
                }
                next += batch;
            }
            count as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a plain run of the target is fine too.
    let rounds = setting("WHARF_BENCH_ROUNDS", 3).max(1);
    let singles = setting("WHARF_BENCH_SINGLES", 500).max(1);
    let batches = setting("WHARF_BENCH_BATCHES", 50).max(1);
    let server = Arc::new(PgServer::start_durable());
    let sqlite = TestState::sqlite();
    let postgres = TestState::postgres(&server);

    println!("durable ledger appends/s (median of {rounds} rounds; same machine, same disk)");
    println!(
        "{:<28} {:>14} {:>14} {:>10}",
        "", "SQLite", "PostgreSQL", "PG/SQLite"
    );
    for (name, count, batch) in [
        (format!("single ({singles} per round)"), singles, 1),
        (
            format!("batch_100 ({batches} per round)"),
            batches * 100,
            100,
        ),
    ] {
        let a = appends_per_second(&sqlite, rounds, count, batch);
        let b = appends_per_second(&postgres, rounds, count, batch);
        println!("{name:<28} {a:>14.0} {b:>14.0} {:>9.2}x", b / a);
    }
    for state in [&sqlite, &postgres] {
        let ledger = Ledger::new(state.open());
        let size = ledger.size().expect("size");
        println!("{}: {size} entries appended", state.engine);
    }
}
