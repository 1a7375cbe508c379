#!/usr/bin/env bash
# Figures for the run-a-stack capability, printed as a small report:
#   1. time from `wharf up -d` to every service ready, for examples/shop (median of 5 runs);
#   2. idle RSS of the control plane supervising that stack;
#   3. the cost of supervising N instances (default 200): control-plane CPU over a 10 s window
#      and RSS, plus the shims' total RSS — once with bare processes, once with testbed
#      instances each probed over HTTP every second.
# Usage: scripts/bench/supervise.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-200}
cargo build -q --release -p wharf -p wharf-testbed -p wharf-runtime
BIN=$PWD/target/release
export PATH=$BIN:$PATH
work=$(mktemp -d)
trap 'for d in "$work"/*/; do (cd "$d" && wharf down >/dev/null 2>&1 || true); done; rm -rf "$work"' EXIT

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

echo "== time from \`wharf up -d\` to all ready (examples/shop, 5 runs)"
times=()
for i in 1 2 3 4 5; do
  d=$work/shop$i; cp -r examples/shop "$d"
  start=$(date +%s%N)
  (cd "$d" && wharf up -d >/dev/null 2>&1)
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000000 )))
  if [ "$i" -lt 5 ]; then (cd "$d" && wharf down >/dev/null 2>&1); fi
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "   runs (ms): $sorted  median: $(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p) ms (includes the db's 500 ms slow start)"
cp_pid=$(cat "$work/shop5/.wharf/control.pid")
echo "== idle control plane RSS (shop stack, 5 instances): $(rss_kib "$cp_pid") KiB"
(cd "$work/shop5" && wharf down >/dev/null 2>&1)

measure() {
  local name=$1 manifest=$2
  local d=$work/$name; mkdir -p "$d"; printf '%s\n' "$manifest" > "$d/wharf.yaml"
  local start; start=$(date +%s%N)
  (cd "$d" && wharf up -d --wait-timeout 300s >/dev/null 2>&1)
  local up_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  local pid; pid=$(cat "$d/.wharf/control.pid")
  local t0; t0=$(cpu_ticks "$pid")
  local w0; w0=$(date +%s%N)
  sleep 10
  local t1; t1=$(cpu_ticks "$pid")
  local w1; w1=$(date +%s%N)
  local cpu; cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v ns=$((w1 - w0)) 'BEGIN {printf "%.2f", 100 * t / hz / (ns / 1e9)}')
  local shims=0
  for s in $(pgrep -f "wharf-shim|wharf __shim" || true); do shims=$((shims + $(rss_kib "$s" 2>/dev/null || echo 0))); done
  local running; running=$(cd "$d" && wharf status --output json | python3 -c "import json,sys; r=json.load(sys.stdin); print(sum(s['running'] for s in r['services']))")
  echo "   $name: $running instances up in ${up_ms} ms; control plane CPU ${cpu}% of one core, RSS $(rss_kib "$pid") KiB; shims total RSS ${shims} KiB"
  (cd "$d" && wharf down >/dev/null 2>&1)
}

echo "== supervising $N instances"
measure bare "name: bare
services:
  idle:
    command: [sleep, \"100000\"]
    replicas: $N"
measure probed "name: probed
services:
  web:
    command: [wharf-testbed, --port, \"\${PORT}\"]
    replicas: $N
    probes:
      ready: {http: {path: /ready}, interval: 1s, timeout: 500ms}"
