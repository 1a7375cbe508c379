//! Ledger benchmarks on a real SQLite file in a temp dir (WAL, synchronous=FULL):
//! durable appends (single and batches of 100), full verification and an inclusion proof
//! at 1,000,000 entries. Run: `cargo bench -p wharf-store --bench ledger`.
//! `WHARF_BENCH_SIZE` shrinks the large ledger for a quick run (default 1,000,000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use tempfile::TempDir;
use wharf_ledger::{Action, Ledger, NewEntry, SignerKey};
use wharf_store::Store;

fn entry(i: u64) -> NewEntry {
    let action: Action = "deploy.step".parse().expect("valid action");
    let time = jiff::Timestamp::from_second(1_700_000_000 + i as i64).expect("valid time");
    let details = json!({ "service": "web", "step": i % 7, "image": "registry/web:1.2.3" });
    NewEntry::new(time, "ops@host", action, format!("web-{}", i % 5), details).expect("valid entry")
}

fn fresh() -> (TempDir, Ledger<Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::new(Store::open(dir.path()).expect("open store"));
    (dir, ledger)
}

fn appends(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_append");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let (_dir, mut ledger) = fresh();
    let next = std::cell::Cell::new(0);
    group.throughput(Throughput::Elements(1));
    group.bench_function("single", |b| {
        b.iter(|| {
            ledger.append(entry(next.get())).expect("append");
            next.set(next.get() + 1);
        })
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("batch_100", |b| {
        b.iter_batched(
            || {
                next.set(next.get() + 100);
                (next.get() - 100..next.get())
                    .map(entry)
                    .collect::<Vec<_>>()
            },
            |batch| ledger.append_batch(batch).expect("append batch"),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Builds the large ledger once (batches of 10,000) and reports how long that took.
fn large() -> (TempDir, Ledger<Store>, SignerKey, u64) {
    let size: u64 = std::env::var("WHARF_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let (dir, mut ledger) = fresh();
    let started = Instant::now();
    for start in (0..size).step_by(10_000) {
        ledger
            .append_batch((start..(start + 10_000).min(size)).map(entry).collect())
            .expect("append");
    }
    let key = SignerKey::from_seed("wharf/bench", [9; 32]).expect("key");
    ledger.checkpoint(&key).expect("checkpoint");
    let took = started.elapsed();
    eprintln!(
        "built {size} entries in {took:.2?} ({:.0} appends/s in batches of 10,000)",
        size as f64 / took.as_secs_f64()
    );
    (dir, ledger, key, size)
}

fn at_scale(c: &mut Criterion) {
    let (_dir, ledger, key, size) = large();
    let mut group = c.benchmark_group(format!("ledger_{size}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("verify", |b| {
        b.iter(|| {
            let report = ledger.verify(&key.verifier()).expect("verify");
            assert!(report.failure.is_none());
            black_box(report)
        })
    });
    group.measurement_time(Duration::from_secs(5));
    let mut seq = 0;
    group.bench_function("inclusion_proof", |b| {
        b.iter(|| {
            seq = (seq + 7_919) % size;
            black_box(ledger.prove_inclusion(seq, size).expect("proof"))
        })
    });
    group.bench_function("consistency_proof", |b| {
        b.iter(|| {
            seq = (seq + 7_919) % size;
            black_box(ledger.prove_consistency(seq, size).expect("proof"))
        })
    });
    group.finish();
}

criterion_group!(benches, appends, at_scale);
criterion_main!(benches);
