#!/usr/bin/env bash
# The probe engine under load: the control plane checks N HTTP endpoints (default 10,000;
# testbed instances serving many paths) every 10 s, for a minute. Prints the control plane's
# CPU share of one core and its RSS (targets: < 50 % and < 200 MB), and how many probe
# results it saw (from the testbeds' request counters).
# Usage: scripts/bench/probes.sh [N] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10000}
SECONDS_TO_RUN=${2:-60}
BEDS=4
cargo build -q --release -p wharf -p wharf-testbed -p wharf-runtime
export PATH=$PWD/target/release:$PATH
work=$(mktemp -d)
pids=()
cleanup() { (cd "$work" && wharf down >/dev/null 2>&1 || true); kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

ports=()
for i in $(seq 1 $BEDS); do
  wharf-testbed --port 0 > "$work/bed$i.out" 2>/dev/null &
  pids+=($!)
done
for i in $(seq 1 $BEDS); do
  until grep -q listening "$work/bed$i.out" 2>/dev/null; do sleep 0.05; done
  ports+=($(sed -E 's/.*:([0-9]+)$/\1/' "$work/bed$i.out"))
done

python3 - "$N" "${ports[@]}" > "$work/wharf.yaml" <<'PY'
import sys
n = int(sys.argv[1]); ports = sys.argv[2:]
print("name: probes\nservices:")
for i in range(n):
    port = ports[i % len(ports)]
    print(f"  ep{i}:\n    kind: directory\n    path: .\n    probes:\n      ready: {{http: {{url: \"http://127.0.0.1:{port}/endpoint/{i}\"}}, interval: 10s, timeout: 2s}}")
PY

cd "$work"
start=$(date +%s%N)
wharf up -d --wait-timeout 120s > /dev/null 2>&1 || true
echo "== $N endpoints, every 10 s: stack settled in $(( ($(date +%s%N) - start) / 1000000 )) ms"
cp=$(cat .wharf/control.pid)
hz=$(getconf CLK_TCK)
served() { local total=0; for p in "${ports[@]}"; do total=$((total + $(curl -s "127.0.0.1:$p/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["served"])'))); done; echo $total; }
t0=$(awk '{print $14 + $15}' /proc/$cp/stat); s0=$(served); w0=$(date +%s%N)
peak=0
for _ in $(seq 1 "$SECONDS_TO_RUN"); do
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' /proc/$cp/status); [ "$rss" -gt "$peak" ] && peak=$rss
done
t1=$(awk '{print $14 + $15}' /proc/$cp/stat); s1=$(served); w1=$(date +%s%N)
awk -v t=$((t1 - t0)) -v hz="$hz" -v ns=$((w1 - w0)) -v s=$((s1 - s0)) -v peak="$peak" -v n="$N" 'BEGIN {
  secs = ns / 1e9
  printf "   control plane CPU: %.1f%% of one core over %.0f s (target < 50%%)\n", 100 * t / hz / secs, secs
  printf "   control plane peak RSS: %.1f MB (target < 200 MB)\n", peak / 1024
  printf "   probes answered: %d (%.0f/s; expected %.0f/s)\n", s, s / secs, n / 10
}'
healthy=$(wharf status --output json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(sum(1 for s in r["services"] if s["state"] == "external"))')
echo "   endpoints reported healthy: $healthy of $N"
