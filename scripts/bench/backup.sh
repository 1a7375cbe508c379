#!/usr/bin/env bash
# Backup throughput and dedup of wharf-backup against PostgreSQL's own tool, side by side:
#  1. time of one backup through wharf-backup (pg_dump streamed into a restic repository,
#     with the record of row counts and checksums) vs `pg_dump -Fc` alone to a file;
#     target: wharf ≤ 1.1× pg_dump's time.
#  2. ten daily backups with 1 % of the rows changed between them (a contiguous range of
#     pgbench_accounts updated, as an application's day touches recent rows, plus 0.1 %
#     appended history), repository size after ten vs after one; target < 1.5×.
# The database is pgbench's schema at scale $SCALE (default 20 ≈ 300 MB; BIG=1 for 1 GB:
# scale 67), in a throwaway cluster on a free loopback port (as the postgres user when root).
#
# Usage: scripts/bench/backup.sh        Env: SCALE, BIG=1, DAYS (default 10)
#
# Figures (2026-12-05, 2-core VM shared with three other builds, load 4-6; release build;
# scale 20, 307 MB database, 204 MB uncompressed dump; two runs of this script):
#   pg_dump -Fc to a file               1.02 s      1.29 s
#   wharf-backup (dump + repository)    1.58 s      1.67 s
#   ratio                               1.55x       1.29x   (target <= 1.1x: not met)
#   repository after 1 / 10 backups     3.12 / 4.16 MB (1.33x)   3.13 / 4.51 MB (1.44x)
#                                                              (target < 1.5x: met)
# (Before, same day: 1.49 s / 5.53 s = 3.72x and 0.72 s / 2.82 s = 3.91x, when the stored
# stream was archived a second time to record its size, and rows were digested with MD5.)
# Where the time goes now, on 2 cores: the server's COPY is the same for both (~0.7-0.9 s:
# `pg_dump -Fc -Z0 | cat`); pg_dump -Fc adds ~0.55 s of gzip in pg_dump. wharf instead runs
# the dump through rustic_core's archiver, whose one chunking thread is the critical path:
# 0.85-0.95 s user + 0.3 s system for 204 MB (measured with pg_dump replaced by `cat` of
# the dump): Rabin rolling hash ~0.35 s (pgbench's blank filler lets nearly every chunk run
# to the 8 MiB maximum, so ~95 % of the bytes are rolled), SHA-256 ~0.1 s, reads and copies;
# zstd level 3 is ~0.07 s and a lower level, or no extra verification, changed nothing
# measurable. The record (row count and hash per table, in a second server backend beside
# pg_dump) costs 0.15-0.5 s of wall time. The size fix-up of the streamed file is a few
# small trees now (crates/backup/src/retree.rs), no second pass over the data.
# BIG=1 (scale 67, 1009 MB database, 688 MB dump; the machine also ran a clippy build):
#   pg_dump -Fc 1.95 s, wharf-backup 4.14 s, ratio 2.13x (target <= 1.1x: not met);
#   repository after 1 / 10 backups 7.86 MB / 9.74 MB, ratio 1.24x (target < 1.5x: met)
set -euo pipefail
cd "$(dirname "$0")/../.."
DAYS=${DAYS:-10}

cargo build --release -q -p wharf-backup --example backup_bench
BENCH=${CARGO_TARGET_DIR:-$PWD/target}/release/examples/backup_bench

. scripts/bench/lib/pgbench-cluster.sh

export WHARF_BENCH_URL="postgres://bench:$PGPASSWORD@127.0.0.1:$PORT/postgres"
export WHARF_BENCH_PASSWORD=bench-repository-password

now() { python3 -c 'import time; print(time.monotonic())'; }
# 1. one backup, each way, best of 3 (alternating, so both see the same cache state).
best_dump=999999; best_wharf=999999
for round in 1 2 3; do
  t0=$(now); "$PGBIN/pg_dump" -Fc -f "$work/dump.pgc" >/dev/null; t1=$(now)
  d=$(python3 -c "print($t1-$t0)"); rm -f "$work/dump.pgc"
  rm -rf "$work/repo1"
  read -r w bytes _ < <(WHARF_BENCH_REPO="$work/repo1" "$BENCH")
  best_dump=$(python3 -c "print(min($best_dump,$d))"); best_wharf=$(python3 -c "print(min($best_wharf,$w))")
done
printf '%-34s %8.2f s\n' "pg_dump -Fc to a file" "$best_dump"
printf '%-34s %8.2f s   (%s bytes of dump)\n' "wharf-backup (dump + repository)" "$best_wharf" "$bytes"
python3 -c "print(f'ratio wharf / pg_dump: {$best_wharf/$best_dump:.2f}x  (target <= 1.1x)')"

# 2. ten daily backups with 1 % changed in between.
rows=$((SCALE * 100000)); step=$((rows / 100))
rm -rf "$work/repo"
WHARF_BENCH_REPO="$work/repo" "$BENCH" >/dev/null
one=$(du -sb "$work/repo" | cut -f1)
for day in $(seq 2 "$DAYS"); do
  lo=$(( (day * 7919 % 97) * step ))
  psql -Xq -c "UPDATE pgbench_accounts SET abalance = abalance + $day WHERE aid > $lo AND aid <= $lo + $step" \
           -c "INSERT INTO pgbench_history SELECT 1, 1, g % $rows + 1, $day, now(), 'x' FROM generate_series(1, $((step / 10))) g"
  WHARF_BENCH_REPO="$work/repo" "$BENCH" >/dev/null
done
ten=$(du -sb "$work/repo" | cut -f1)
printf '%-34s %12s bytes\n' "repository after 1 backup" "$one" "repository after $DAYS backups" "$ten"
python3 -c "print(f'ratio {$DAYS} backups / 1 backup: {$ten/$one:.2f}x  (target < 1.5x)')"
