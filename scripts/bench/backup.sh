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
# Figures (2026-12-06, 2-core VM shared with other builds and test runs, load 1.6-2.6; release
# build; scale 20, 307 MB database, 204 MB uncompressed dump; three runs of this script):
#   pg_dump -Fc to a file               1.13 s      1.34 s      1.09 s
#   wharf-backup (dump + repository)    1.65 s      1.70 s      1.37 s
#   ratio                               1.46x       1.27x       1.25x   (target <= 1.1x: not met)
#   repository after 1 / 10 backups     3.06 / 4.16 MB (1.36x)  3.11 / 4.24 MB (1.36x)
#                                       3.09 / 4.14 MB (1.34x)  (target < 1.5x: met)
# Side by side in one cluster (/tmp A/B, pg_dump -Fc then each build, alternating; ratios per
# round, load 1.7-2.2): before this day's changes 2.07 1.86 1.55 1.95; with the tool pipe read
# through a 1 MiB buffer and the record's sum over int8 1.88 1.50 1.96 1.87 1.72; plus the
# record's typed row hash (format 3) 1.49 1.27 1.58 1.55 1.82; and with no record at all (a
# measuring build only) 1.42 1.11 1.22 1.28 1.17. (2026-12-05: 1.55x and 1.29x.)
# Where the time goes now, on 2 cores (/usr/bin/time; psql for the record's scan alone):
#  - pg_dump -Fc: its wall time is the server's COPY (`pg_dump -Fc -Z0` to a file takes as
#    long, 0.84-1.16 s); its gzip (0.7-0.8 s user) runs on the other core meanwhile. In all
#    ~1.65 CPU-s. The dump wharf reads is `-Fc -Z0` (the repository compresses with zstd, and
#    a compressed dump would not dedup: its bytes differ from the first changed row on).
#  - wharf: the same COPY (~0.8 CPU-s in the server), pg_dump -Z0 (~0.45 CPU-s, mostly system
#    time: it writes 204 MB in 4 KiB stdio writes), the archiver (1.1-1.3 s user + 0.35-0.45 s
#    system) and the record's scan (~0.35 CPU-s in a second backend): ~3.1 CPU-s on 2 cores.
#  - The archiver's one chunking thread is its critical path: the same dump read from a file
#    through `cat`, with no server and no record, takes 0.95-1.06 s (~1.0 s user + 0.3 s
#    system) — already pg_dump -Fc's whole time. rustic_core 0.13's Rabin chunker rolls
#    ~95 % of the bytes (pgbench's blank filler lets nearly every chunk run to the 8 MiB
#    maximum) one byte per loop turn with a push into the chunk (~0.6 s), then SHA-256 (~0.1 s,
#    SHA-NI); zstd 3 and encryption run on other threads (~0.1 s). Its 4 KiB reads were one
#    system call each from the pipe; a 1 MiB buffer in between (`capture::piped`) saves
#    ~0.1 s. A larger malloc threshold (glibc tunables) changed nothing measurable.
#  - The record (row count and hash per table, in the snapshot pg_dump reads, beside it):
#    its scan alone was 0.75-0.95 s (text form, a numeric cast per row); summing the int8
#    hashes without the cast, 0.63-0.82 s; hashing rows by typed value (`hash_record_extended`,
#    record format 3, the text form kept for tables with a column type without a hash) 0.32-
#    0.37 s; count(*) alone is 0.11-0.18 s. It still costs ~0.1-0.3 s of wall time on 2 cores.
# What is left to reach 1.1x here: the chunking thread alone is ~1.0x; a faster chunker that
# keeps restic's boundaries (same polynomial, window, sizes) would need wharf's own data path
# past rustic_core's archiver (as retree.rs writes tree packs) or a change upstream; a record
# taken from the dump stream as it passes (COPY rows in the custom format's data blocks)
# would remove the second scan, at the cost of parsing pg_dump's TOC and a drill hashing the
# sandbox's COPY output under pg_dump's session settings. With 4+ cores the stages overlap
# and the chunking thread bounds wharf at ~1.0-1.2x of pg_dump -Fc.
# BIG=1 (scale 67, 1009 MB database, 688 MB dump; load 5-8, pg_dump -Fc took 2.8x its time
# of 2026-12-05): pg_dump -Fc 5.49 s, wharf-backup 8.28 s, ratio 1.51x (2026-12-05: 2.13x;
# target <= 1.1x: not met); repository after 1 / 10 backups 7.83 MB / 9.57 MB, ratio 1.22x
# (target < 1.5x: met)
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
