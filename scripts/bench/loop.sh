#!/usr/bin/env bash
# Control-loop event latency under 200 instances and a busy writer, before and after the
# store-writer thread ("one writer, a typed API"): for each wharf binary, a stack of N
# instances (default 200) each probed over TCP every second (steady probe events), a few
# instances killed every second (exits and restarts, each a journal write), and a Python
# process holding SQLite's write lock on .wharf/state.db for 200 ms out of every 250 ms.
# Meanwhile `GET /v1/status` over the unix socket is timed every 50 ms for DURATION seconds
# (default 20): the loop answers it, so its latency is the loop's delay. Prints p50/p99/max
# per binary, side by side, and the ratio.
#
# Usage: scripts/bench/loop.sh [WHARF_BIN_BEFORE] [WHARF_BIN_AFTER]
#   Each binary needs wharf-shim and wharf-proxy beside it. Defaults: /work/target-before
#   and $CARGO_TARGET_DIR (or ./target), debug builds. Env: N, DURATION, KILLS_PER_SEC.
#   Build the before binary from 1af6f00 in its own worktree, e.g.
#     git worktree add /work/wt-before 1af6f00 && cd /work/wt-before &&
#     CARGO_TARGET_DIR=/work/target-before cargo build --bin wharf --bin wharf-shim --bin wharf-proxy
#
# Figures (2026-12-05, 2-core VM with 23 GiB, shared with other builds; debug builds; N=200, 20 s,
# 3 kills/s; before = 1af6f00, after = branch wt-tests), two runs:
#              p50 ms     p99 ms     max ms  samples
#   before        3.5      451.1      487.6      232      |  3.2   447.2   688.3   262
#   after         3.5       12.2       53.5      398      |  3.9    14.0    33.8   398
#   ratio        1.0x      37.0x       9.1x               |  0.8x   31.9x   20.4x
# The median is unchanged (most status calls meet no journal write); the tail is the loop
# waiting for the busy writer's lock before, and not after.
set -euo pipefail
cd "$(dirname "$0")/../.."
BEFORE=${1:-/work/target-before/debug/wharf}
AFTER=${2:-${CARGO_TARGET_DIR:-$PWD/target}/debug/wharf}
N=${N:-200}
DURATION=${DURATION:-20}
KILLS_PER_SEC=${KILLS_PER_SEC:-3}

work=$(mktemp -d)
helpers=()
cleanup() {
  for pid in "${helpers[@]}"; do kill "$pid" 2>/dev/null || true; done
  for d in "$work"/*/; do
    [ -f "$d/wharf.yaml" ] || continue
    bin=$(cat "$d/bin" 2>/dev/null || true)
    [ -n "$bin" ] && (cd "$d" && "$bin" down >/dev/null 2>&1 || true)
  done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# One listener every probe connects to: the probe traffic, without N servers.
cat > "$work/listen.py" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1024)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.close()
PY

# Holds BEGIN IMMEDIATE for 200 ms, releases for 50 ms, until killed.
cat > "$work/writer.py" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
while True:
    db.execute("BEGIN IMMEDIATE"); time.sleep(0.2); db.execute("COMMIT"); time.sleep(0.05)
PY

# Times GET /v1/status every 50 ms for DURATION s; prints "p50 p99 max samples" in ms.
cat > "$work/measure.py" <<'PY'
import socket, sys, time
sock, duration = sys.argv[1], float(sys.argv[2])
samples, end = [], time.monotonic() + duration
while time.monotonic() < end:
    t0 = time.monotonic()
    c = socket.socket(socket.AF_UNIX); c.settimeout(60); c.connect(sock)
    c.sendall(b"GET /v1/status HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n")
    while c.recv(65536):
        pass
    c.close()
    samples.append((time.monotonic() - t0) * 1000)
    time.sleep(max(0.0, 0.05 - (time.monotonic() - t0)))
samples.sort()
pick = lambda p: samples[min(len(samples) - 1, int(round((len(samples) - 1) * p)))]
print(f"{pick(0.5):.1f} {pick(0.99):.1f} {samples[-1]:.1f} {len(samples)}")
PY

# Kills KILLS_PER_SEC random running instances every second, until killed.
cat > "$work/churn.py" <<'PY'
import json, os, random, signal, socket, sys, time
sock, per_sec = sys.argv[1], int(sys.argv[2])
def status():
    c = socket.socket(socket.AF_UNIX); c.settimeout(60); c.connect(sock)
    c.sendall(b"GET /v1/status HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n")
    raw = b""
    while chunk := c.recv(65536):
        raw += chunk
    body = raw.split(b"\r\n\r\n", 1)[1]
    return json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])
while True:
    pids = [i["pid"] for s in status()["services"] for i in s["instances"]
            if i.get("pid") and i.get("phase") == "running"]
    for pid in random.sample(pids, min(per_sec, len(pids))):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(1)
PY

python3 "$work/listen.py" > "$work/port" &
helpers+=($!)
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(head -1 "$work/port")

run() {
  local label=$1 bin=$2 d=$work/$1
  mkdir -p "$d"; echo "$bin" > "$d/bin"
  cat > "$d/wharf.yaml" <<YAML
name: loopbench-$label
services:
  fleet:
    command: [sleep, "3600"]
    replicas: $N
    restart: always
    probes:
      ready: {tcp: {host: 127.0.0.1, port: $port}, interval: 1s, timeout: 500ms}
YAML
  (cd "$d" && "$bin" up -d --wait-timeout 600s > "$d/up.log" 2>&1) || {
    echo "$label: up failed:" >&2; cat "$d/up.log" >&2; return 1; }
  local sock=$d/.wharf/control.sock
  python3 "$work/writer.py" "$d/.wharf/state.db" & local writer=$!
  python3 "$work/churn.py" "$sock" "$KILLS_PER_SEC" & local churn=$!
  helpers+=("$writer" "$churn")
  python3 "$work/measure.py" "$sock" "$DURATION" > "$d/figures"
  kill "$writer" "$churn" 2>/dev/null || true
  wait "$writer" "$churn" 2>/dev/null || true
  (cd "$d" && "$bin" down > "$d/down.log" 2>&1) || { echo "$label: down failed" >&2; cat "$d/down.log" >&2; }
  cat "$d/figures"
}

echo "== control-loop latency (GET /v1/status over the unix socket), $N instances, busy writer, $KILLS_PER_SEC kills/s, ${DURATION}s"
before=$(run before "$BEFORE")
after=$(run after "$AFTER")
read -r b50 b99 bmax bn <<< "$before"
read -r a50 a99 amax an <<< "$after"
printf '%-8s %10s %10s %10s %8s\n' "" "p50 ms" "p99 ms" "max ms" "samples"
printf '%-8s %10s %10s %10s %8s\n' before "$b50" "$b99" "$bmax" "$bn"
printf '%-8s %10s %10s %10s %8s\n' after "$a50" "$a99" "$amax" "$an"
awk -v b50="$b50" -v a50="$a50" -v b99="$b99" -v a99="$a99" -v bm="$bmax" -v am="$amax" 'BEGIN {
  printf "%-8s %9.1fx %9.1fx %9.1fx\n", "ratio", b50 / a50, b99 / a99, bm / am }'
