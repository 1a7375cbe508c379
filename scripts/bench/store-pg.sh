#!/usr/bin/env bash
# Durable ledger appends/s on the two state engines in one run, side by side with the ratio:
# single appends and batches of 100, on SQLite (a file in a temp dir, WAL, synchronous=FULL)
# and on PostgreSQL (a server started for the run on a free loopback port, fsync=on,
# synchronous_commit=on), both on the same disk. PostgreSQL's binaries come from
# /usr/lib/postgresql/*/bin or PATH (scripts/test installs them); as root the server runs as
# the `postgres` user.
# Usage: scripts/bench/store-pg.sh [ROUNDS]   (env: WHARF_BENCH_SINGLES, WHARF_BENCH_BATCHES)
set -euo pipefail
cd "$(dirname "$0")/../.."
export WHARF_BENCH_ROUNDS=${1:-${WHARF_BENCH_ROUNDS:-3}}
cargo bench -q -p wharf-store --bench ledger_engines
