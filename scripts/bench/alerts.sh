#!/usr/bin/env bash
# Time from a failure to the page at the receiver: a database (a testbed) turns unready through
# its control endpoint, with five dependents; the rule pages after `for: 1s`; a local receiver
# (a fake of PagerDuty's Events API, Python's http.server) stamps each request's arrival. Prints,
# per round, the delay past `for` (target < 1 s; probe interval 200 ms, one failure makes it
# down) and the number of pages for the one root cause (target 1), then the resolve's delay
# after the database is ready again.
# Usage: scripts/bench/alerts.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
cargo build -q --release -p wharf -p wharf-testbed -p wharf-proxy
export PATH=$PWD/target/release:$PATH
work=$(mktemp -d)
pids=()
cleanup() { (cd "$work" && wharf down >/dev/null 2>&1 || true); kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pd=$(free_port)
python3 - "$pd" "$work/received" <<'PY' &
import http.server, json, sys, time
port, out = int(sys.argv[1]), sys.argv[2]
class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with open(out, "a") as f:
            f.write(f"{time.time():.6f} {body.get('event_action', 'change')} {body.get('dedup_key', '')}\n")
        self.send_response(202); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
PY
pids+=($!)
db=$(free_port)
{
  printf 'name: bench\nsecrets:\n  PD_KEY: {}\nservices:\n'
  printf '  db:\n    command: [wharf-testbed, --port, "%s"]\n' "$db"
  printf '    probes:\n      ready: {http: {url: "http://127.0.0.1:%s/ready"}, interval: 200ms, failure_threshold: 1}\n' "$db"
  for s in api worker billing web admin; do
    printf '  %s:\n    command: [wharf-testbed, --port, "${PORT}", --depends-on, "http://127.0.0.1:%s/ready"]\n' "$s" "$db"
    printf '    depends_on: {db: {condition: ready}}\n'
    printf '    probes:\n      ready: {http: {path: /ready}, interval: 200ms, failure_threshold: 2}\n'
  done
  printf 'alerts:\n  - name: oncall\n    webhook: {url: "http://127.0.0.1:%s/v2/enqueue", format: pagerduty, routing_key: "${secret:PD_KEY}"}\n    thresholds: {down_for: 1s}\n' "$pd"
} > "$work/wharf.yaml"
cd "$work"
echo bench-key | wharf secret set PD_KEY >/dev/null 2>&1
wharf up -d --wait-timeout 60s >/dev/null 2>&1
ready() { curl -s -o /dev/null -X POST --data "$1" "http://127.0.0.1:$db/control/ready"; }
count() { local n; n=$(grep -c " $1 " received 2>/dev/null) || true; echo "${n:-0}"; }
printf '%-6s %-22s %-8s %-22s\n' round "page after for (ms)" pages "resolve after ready (ms)"
for round in $(seq 1 "$ROUNDS"); do
  before=$(count trigger)
  t0=$(date +%s.%N); ready false
  until [ "$(count trigger)" -gt "$before" ]; do sleep 0.01; done
  sleep 3  # any second page would have come by now
  t1=$(grep " trigger " received | tail -1 | cut -d' ' -f1)
  pages=$(( $(count trigger) - before ))
  before=$(count resolve)
  t2=$(date +%s.%N); ready true
  until [ "$(count resolve)" -gt "$before" ]; do sleep 0.01; done
  t3=$(grep " resolve " received | tail -1 | cut -d' ' -f1)
  until wharf status --output json 2>/dev/null | grep -q '"status": *"ok"'; do sleep 0.1; done
  python3 -c "print(f'{$round:<6} {($t1-$t0-1)*1000:<22.0f} {$pages:<8} {($t3-$t2)*1000:<22.0f}')"
done
