#!/usr/bin/env bash
# Figures for progressive delivery, under a steady open-loop load of RATE requests/s
# (default 200) through the wharf proxy, RUNS times each (default 5):
#   1. a bad canary (20 % errors against a clean stable version): failed client requests in
#      total, and seconds from the first bad response to the rollback (weights back on stable);
#   2. a latency regression (+200 ms on every request of the new version): seconds from the
#      deploy to the rollback, and failed requests (there should be none);
#   3. a good canary through every step to 100 %, old instances drained: failed requests.
# Usage: scripts/bench/rollout.sh [RUNS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
RATE=${2:-200}
cargo build -q --release -p wharf -p wharf-testbed -p wharf-proxy -p wharf-runtime
BIN=$PWD/target/release
export PATH=$BIN:$PATH
work=$(mktemp -d)
trap 'for d in "$work"/*/; do (cd "$d" && wharf down >/dev/null 2>&1 || true); done; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# One scenario: up, load, deploy, wait for the outcome, stop the load; prints one JSON line.
scenario() {
  local name=$1 command_extra=$2 steps=$3
  local d=$work/$name; mkdir -p "$d"
  local port; port=$(free_port)
  cat > "$d/wharf.yaml" <<EOF
name: bench
services:
  api:
    version: "1.0"
    command: [wharf-testbed, --port, "\${PORT}", --version, "\${VERSION}"]
    port: $port
    replicas: 2
    probes:
      ready: {http: {path: /ready}, interval: 200ms}
    rollout:
      strategy: canary
      steps: $steps
      analysis: {max_error_rate: 1%, max_latency_p95: 100ms, min_requests: 20}
      deadlines: {drain: 5s}
EOF
  (cd "$d" && wharf up -d >/dev/null 2>&1)
  wharf-load --url "http://127.0.0.1:$port/" --rate "$RATE" --duration 60s > "$d/load.json" &
  local load=$!
  # Let the load settle on the stable version first.
  python3 - "$port" <<'EOF'
import sys, time, urllib.request
deadline = time.time() + 20
while time.time() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1).read(); break
    except Exception: time.sleep(0.05)
EOF
  sleep 1
  (cd "$d" && wharf deploy api --version 2.0 \
      --command "wharf-testbed --port \${PORT} --version \${VERSION} $command_extra" \
      --watch >/dev/null 2>&1 || true)
  sleep 1
  kill -INT "$load"; wait "$load" || true
  (cd "$d" && wharf audit log --output json > ledger.json && wharf down >/dev/null 2>&1)
  python3 - "$d" <<'EOF'
import json, sys, datetime
d = sys.argv[1]
load = json.load(open(f"{d}/load.json"))
ledger = json.load(open(f"{d}/ledger.json"))
def ms(entry):
    t = entry["time"].rstrip("Z")
    head, _, frac = t.partition(".")
    base = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() * 1000 + float("0." + (frac or "0")) * 1000
start = next(ms(e) for e in ledger if e["action"] == "deploy.start")
rollback = next((ms(e) for e in ledger if e["action"] == "deploy.rollback"), None)
outcome = "rolled-back" if any(e["action"] == "deploy.rolled_back" for e in ledger) else (
    "succeeded" if any(e["action"] == "deploy.succeeded" for e in ledger) else "unfinished")
first_bad = load.get("first_failure_ms")
first_bad_abs = load["started_at_unix_ms"] + first_bad if first_bad is not None else None
print(json.dumps({
    "outcome": outcome,
    "requests": load["total"],
    "failed": load["failures"],
    "deploy_to_rollback_s": None if rollback is None else round((rollback - start) / 1000, 3),
    "first_bad_to_rollback_s": None if rollback is None or first_bad_abs is None
        else round((rollback - first_bad_abs) / 1000, 3),
}))
EOF
}

summarise() {
  python3 -c '
import json, sys, statistics
rows = [json.loads(l) for l in sys.stdin if l.strip()]
def col(key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals: return "n/a"
    return f"median {statistics.median(vals)}, max {max(vals)}, runs {vals}"
print("   outcomes:", [r["outcome"] for r in rows])
for key in sys.argv[1:]:
    print(f"   {key}: {col(key)}")
' "$@"
}

echo "== bad canary: 20% errors, steps 20% → 100%, $RATE req/s, $RUNS runs (target ≤ 20 failed, < 2 s)"
for i in $(seq "$RUNS"); do scenario "bad$i" "--error-rate 0.2" "[{weight: 20, pause: 30s}, {weight: 100}]"; done \
  | summarise failed first_bad_to_rollback_s
echo "== latency regression: +200 ms, $RATE req/s, $RUNS runs"
for i in $(seq "$RUNS"); do scenario "slow$i" "--latency 200ms" "[{weight: 20, pause: 30s}, {weight: 100}]"; done \
  | summarise failed deploy_to_rollback_s
echo "== good canary: 20% → 50% → 100% (2 s pauses), $RATE req/s, 1 run (target 0 failed)"
scenario good "" "[{weight: 20, pause: 2s}, {weight: 50, pause: 2s}, {weight: 100}]" | summarise failed
