#!/usr/bin/env bash
# The web dashboard's cost: what a first load sends (bytes of HTML, JS, CSS), how soon headless
# Chromium paints it (first contentful paint, and the first render of the live stack — the
# first meaningful paint), and the control plane's CPU on a 200-instance stack with the
# dashboard open in Chromium, side by side with it closed, as a ratio; then with PAGES pages'
# live streams open at once (the browser's and PAGES-1 more over plain sockets), which shows
# what each further page costs (one shared feed: next to nothing).
# Usage: scripts/bench/dashboard.sh               (builds release binaries)
#        SERVICES=20 REPLICAS=10 SECONDS_EACH=30 PAGES=20 scripts/bench/dashboard.sh
#        WHARF=target/debug/wharf scripts/bench/dashboard.sh   (binaries already built)
# Needs chromium and chromium-driver (scripts/test installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v chromedriver >/dev/null || { echo "chromedriver is needed: apt-get install -y chromium chromium-driver" >&2; exit 2; }
if [ -z "${WHARF:-}" ]; then
  cargo build -q --release -p wharf -p wharf-proxy -p wharf-testbed
  WHARF=$PWD/target/release/wharf
fi
TESTBED=$(dirname "$WHARF")/wharf-testbed
work=$(mktemp -d)
cleanup() {
  (cd "$work" && "$WHARF" down >/dev/null 2>&1) || true
  [ -n "${driver:-}" ] && kill "$driver" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

SERVICES=${SERVICES:-20} REPLICAS=${REPLICAS:-10} SECONDS_EACH=${SECONDS_EACH:-30} PAGES=${PAGES:-20}
python3 - "$work/wharf.yaml" "$TESTBED" "$SERVICES" "$REPLICAS" <<'PY'
import sys
path, testbed, services, replicas = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lines = ["name: bench", "services:"]
for i in range(services):
    lines += [f"  svc{i}:", f'    command: [{testbed}, --port, "${{PORT}}"]', f"    replicas: {replicas}",
              "    probes:", "      ready: {http: {path: /ready}, interval: 1s}"]
    if i > 0:
        lines.append(f"    depends_on: [svc{(i - 1) // 2}]")
open(path, "w").write("\n".join(lines) + "\n")
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cd "$work"
echo "starting $((SERVICES * REPLICAS)) instances…" >&2
"$WHARF" up -d --wait-timeout 5m --dashboard-listen "127.0.0.1:$port" >/dev/null
token=$("$WHARF" token create bench --role viewer 2>/dev/null | tail -1)
control=$(cat .wharf/control.pid 2>/dev/null || "$WHARF" status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["control_pid"])')
chromedriver --port="$dport" >/dev/null 2>&1 &
driver=$!
python3 - "$port" "$dport" "$token" "$control" "$SECONDS_EACH" "$((SERVICES * REPLICAS))" "$PAGES" <<'PY'
import json, os, socket, sys, threading, time, urllib.error, urllib.request, tempfile, http.cookiejar

port, dport, token, control, seconds, instances, pages = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
base = f"http://127.0.0.1:{port}"

def wd(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{dport}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)["value"]

def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

def cpu_over(pid, secs):
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(secs)
    return 100 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)

# Bytes of a first load, as served (no compression).
jar = http.cookiejar.CookieJar()
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
opener.open(urllib.request.Request(f"{base}/ui/login", data=f"token={token}".encode(), method="POST"))
sizes = {}
for name, path in [("HTML", "/ui/"), ("JS", "/ui/assets/app.js"), ("CSS", "/ui/assets/app.css")]:
    sizes[name] = len(opener.open(base + path).read())

deadline = time.monotonic() + 180
while True:
    try:
        session = wd("POST", "/session", {"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", "--window-size=1400,1000",
                     f"--user-data-dir={tempfile.mkdtemp()}"]}}}})["sessionId"]
        break
    except urllib.error.HTTPError as error:
        sys.exit(f"chromedriver refused the session: {error.read()[:500]!r}")
    except Exception as error:
        if time.monotonic() > deadline:
            sys.exit(f"no WebDriver session: {error}")
        time.sleep(0.1)

def js(script):
    return wd("POST", f"/session/{session}/execute/sync", {"script": script, "args": []})

def until_ready():
    deadline = time.monotonic() + 60
    while not js("return document.body && document.body.dataset.ready === 'true'"):
        if time.monotonic() > deadline:
            sys.exit("the dashboard never rendered")
        time.sleep(0.05)

def paint():
    return js("""const fcp = performance.getEntriesByName('first-contentful-paint')[0];
                 const first = performance.getEntriesByName('wharf-first-render')[0];
                 return [fcp ? fcp.startTime : null, first ? first.startTime : null];""")

closed = cpu_over(control, seconds)
wd("POST", f"/session/{session}/url", {"url": f"{base}/ui/login"})
field = wd("POST", f"/session/{session}/element", {"using": "css selector", "value": "#token"})
key = next(iter(field.values()))
wd("POST", f"/session/{session}/element/{key}/value", {"text": token})
button = wd("POST", f"/session/{session}/element", {"using": "css selector", "value": "#login"})
wd("POST", f"/session/{session}/element/{next(iter(button.values()))}/click", {})
until_ready()
cold = paint()
loads = []
for _ in range(5):
    wd("POST", f"/session/{session}/refresh", {})
    until_ready()
    loads.append(paint())
time.sleep(3)
opened = cpu_over(control, seconds)

# More pages: PAGES-1 further live streams with the same session cookie, each read to the end
# by a thread (as a browser would), beside the browser's own.
cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
first_events = []
def stream():
    s = socket.create_connection(("127.0.0.1", int(port)))
    s.sendall(f"GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n\r\n".encode())
    seen = False
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            return
        if not seen and b"event: snapshot" in chunk:
            seen = True
            first_events.append(1)
for _ in range(pages - 1):
    threading.Thread(target=stream, daemon=True).start()
deadline = time.monotonic() + 60
while len(first_events) < pages - 1:
    if time.monotonic() > deadline:
        sys.exit(f"only {len(first_events)} of {pages - 1} streams got a first snapshot")
    time.sleep(0.05)
time.sleep(3)
many = cpu_over(control, seconds)
wd("DELETE", f"/session/{session}")

total = sum(sizes.values())
print(f"dashboard first load: HTML {sizes['HTML']} B, JS {sizes['JS']} B, CSS {sizes['CSS']} B — {total} B in all ({sizes['JS'] / 1024:.1f} KB of JS; budget 100 KB)")
def ms(v):
    return f"{v:.0f} ms" if v is not None else "n/a"
fcp_warm = sorted(l[0] for l in loads if l[0] is not None)
first_warm = sorted(l[1] for l in loads if l[1] is not None)
print(f"headless Chromium, {instances} instances: first load after login — first contentful paint {ms(cold[0])}, first render of the live stack {ms(cold[1])}")
if fcp_warm and first_warm:
    print(f"  reloads (median of {len(loads)}): first contentful paint {ms(fcp_warm[len(fcp_warm) // 2])}, first render of the live stack {ms(first_warm[len(first_warm) // 2])}")
ratio = opened / closed if closed > 0 else float("inf")
print(f"control plane CPU over {seconds} s, {instances} instances: dashboard closed {closed:.2f} %, open {opened:.2f} % (ratio open/closed {ratio:.2f})")
per_page = (many - opened) / (pages - 1) if pages > 1 else 0.0
print(f"  {pages} pages' live streams open: {many:.2f} % (ratio {pages} pages/closed {many / closed if closed > 0 else float('inf'):.2f}; each page past the first {per_page:+.2f} %)")
PY
