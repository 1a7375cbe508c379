#!/usr/bin/env bash
# Control-plane failover on a PostgreSQL state, RUNS times (default 3): two replicas of the
# real `wharf` binary share one PostgreSQL server (started per run on a free loopback port) and
# one state directory, a canary rollout runs under 100 requests/s through the proxy, the leader
# is killed with SIGKILL, and the time from the kill to the standby's `control.leader` entry is
# measured (crates/wharf/tests/ha.rs prints it). Printed beside the lease's TTL, with the ratio.
# PostgreSQL's binaries come from /usr/lib/postgresql/*/bin or PATH (scripts/test installs
# them); as root the server runs as the `postgres` user.
# Usage: scripts/bench/failover.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
cargo build -q -p wharf --bins --tests
figures=()
for run in $(seq 1 "$RUNS"); do
  line=$(cargo test -q -p wharf --test ha -- --nocapture 2>&1 | grep -o 'failover_ms=[0-9]* ttl_ms=[0-9]*' || true)
  if [ -z "$line" ]; then
    echo "run $run: the HA test did not report a failover (run it alone to see why)" >&2
    exit 1
  fi
  figures+=("$line")
done
printf '%-5s %14s %10s %16s\n' run failover_ms ttl_ms failover/ttl
i=0
for line in "${figures[@]}"; do
  i=$((i + 1))
  f=${line#failover_ms=}; f=${f%% *}
  t=${line##*ttl_ms=}
  printf '%-5s %14s %10s %16s\n' "$i" "$f" "$t" "$(python3 -c "print(f'{$f/$t:.2f}')")"
done
