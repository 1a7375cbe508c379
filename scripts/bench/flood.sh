#!/usr/bin/env bash
# A connection flood against a running stack, as issue 20 found it: FLOOD connections (default
# 20,000) held open against the TCP API (`--api-listen`, TLS) and a service's port on the wharf
# proxy — half each, idle on the API, one byte of a request head on the proxy, from source
# addresses 127.0.0.2 and up (another machine, as loopback lets one pretend), re-opened as soon
# as wharf closes them. Meanwhile, from 127.0.0.1, legitimate requests go through the proxy (a
# new connection each) and the operator asks `GET /v1/status` on the unix socket. Prints, side
# by side without and during the flood: the legitimate-request success rate and the operator
# socket's latency (p50, p99, max), and how many flood connections wharf held vs refused.
# Targets (issue 20): 100 % and p99 < 100 ms during the flood.
# Usage: scripts/bench/flood.sh [FLOOD] [REQUESTS]   (defaults 20000 2000)
set -euo pipefail
cd "$(dirname "$0")/../.."
FLOOD=${1:-20000}
REQUESTS=${2:-2000}
# Each flooding process holds at most PER_PROCESS sockets, under its own descriptor limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PER_PROCESS=$(( $(ulimit -n) - 200 ))
[ "$PER_PROCESS" -gt 9000 ] && PER_PROCESS=9000
cargo build -q --release -p wharf -p wharf-proxy -p wharf-testbed
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  (cd "$work" && "$bin/wharf" down >/dev/null 2>&1) || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
web_port=$(free_port)
api_port=$(free_port)
cat > "$work/wharf.yaml" <<YAML
name: flood
services:
  web:
    command: [$bin/wharf-testbed, --port, "\${PORT}"]
    port: $web_port
    probes:
      ready: {http: {path: /ready}, interval: 200ms, timeout: 500ms}
YAML
(cd "$work" && WHARF_API_TOKEN=flood-bench-token-0123456789 "$bin/wharf" up -d \
  --api-listen "127.0.0.1:$api_port" >/dev/null 2>"$work/up.err") || { cat "$work/up.err"; exit 1; }

# The flooding client: holds COUNT connections to HOST:PORT from 127.0.0.(FIRST…) and opens a
# new one for each that wharf closes; prints "held N refused M" when asked (SIGUSR1).
cat > "$work/flood.py" <<'PY'
import os, select, signal, socket, sys, time
port, count, first, payload = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4].encode()
per_source = 5000
socks, refused = {}, 0
def open_one(i):
    s = socket.socket()
    s.setblocking(False)
    s.bind((f"127.0.0.{first + i // per_source}", 0))
    s.connect_ex(("127.0.0.1", port))
    socks[s.fileno()] = (s, i, False)
    return s.fileno()
for i in range(count):
    try:
        open_one(i)
    except OSError:
        pass
poll = select.epoll()
for fd in socks:
    poll.register(fd, select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
def report(*_):
    print(f"held {len(socks)} refused {refused}", flush=True)
signal.signal(signal.SIGUSR1, report)
print("ready", flush=True)
while True:
    for fd, events in poll.poll(1.0):
        s, i, sent = socks.get(fd, (None, None, None))
        if s is None:
            continue
        if events & (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR):
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                poll.unregister(fd); s.close(); del socks[fd]; refused += 1
                try:
                    poll.register(open_one(i), select.EPOLLOUT | select.EPOLLIN | select.EPOLLRDHUP)
                except OSError:
                    pass
                continue
        if events & select.EPOLLOUT and not sent:
            try:
                if payload:
                    s.send(payload)
            except OSError:
                pass
            socks[fd] = (s, i, True)
            poll.modify(fd, select.EPOLLIN | select.EPOLLRDHUP)
PY

# The measurements: REQUESTS legitimate requests through the proxy from 127.0.0.1, each on a
# new connection (5 s deadline), and 200 `GET /v1/status` on the operator's socket.
cat > "$work/measure.py" <<'PY'
import socket, sys, time
web_port, requests, sock_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ok = 0
for _ in range(requests):
    try:
        s = socket.create_connection(("127.0.0.1", web_port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        ok += data.startswith(b"HTTP/1.1 200")
    except OSError:
        pass
lat, answered = [], 0
for _ in range(200):
    start = time.perf_counter()
    u = socket.socket(socket.AF_UNIX)
    u.settimeout(30)
    u.connect(sock_path)
    u.sendall(b"GET /v1/status HTTP/1.1\r\nHost: wharf\r\nConnection: close\r\n\r\n")
    answer = b""
    while True:
        chunk = u.recv(65536)
        if not chunk:
            break
        answer += chunk
    u.close()
    lat.append((time.perf_counter() - start) * 1000)
    answered += answer.startswith(b"HTTP/1.1 200") and b'"services"' in answer
lat.sort()
print(f"{100.0 * ok / requests:.2f} {lat[len(lat) // 2]:.2f} {lat[int(len(lat) * 0.99)]:.2f} {lat[-1]:.2f} {100.0 * answered / len(lat):.1f}")
PY

socket_path="$work/.wharf/control.sock"
until python3 - "$web_port" <<'PY' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
assert s.recv(100).startswith(b"HTTP/1.1 200")
PY
do sleep 0.2; done

read -r base_ok base_p50 base_p99 base_max base_answered < <(python3 "$work/measure.py" "$web_port" "$REQUESTS" "$socket_path")

# Half the flood on each target, in processes of at most PER_PROCESS sockets, each from its own
# block of source addresses.
half=$(( FLOOD / 2 ))
flooders=()
source=2
for target in "$api_port:" "$web_port:G"; do
  port=${target%%:*}; payload=${target#*:}
  left=$half
  while [ "$left" -gt 0 ]; do
    n=$(( left < PER_PROCESS ? left : PER_PROCESS ))
    python3 "$work/flood.py" "$port" "$n" "$source" "$payload" > "$work/flood.$source.out" &
    pids+=($!); flooders+=("$!:$source")
    source=$(( source + (n + 4999) / 5000 ))
    left=$(( left - n ))
  done
done
for f in "${flooders[@]}"; do
  until grep -q ready "$work/flood.${f#*:}.out" 2>/dev/null; do sleep 0.1; done
done
sleep 1 # let the first wave of refusals and re-opens settle

read -r flood_ok flood_p50 flood_p99 flood_max flood_answered < <(python3 "$work/measure.py" "$web_port" "$REQUESTS" "$socket_path")

held=0; refused=0
for f in "${flooders[@]}"; do
  kill -USR1 "${f%%:*}"
done
sleep 0.5
for f in "${flooders[@]}"; do
  line=$(grep held "$work/flood.${f#*:}.out" | tail -1)
  held=$(( held + $(echo "$line" | awk '{print $2}') ))
  refused=$(( refused + $(echo "$line" | awk '{print $4}') ))
done
control_pid=$(cat "$work/.wharf/control.pid")
proxy_pid=$(pgrep -f "^$bin/wharf-proxy" | head -1 || true)
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

printf '\nflood: %d connections (%d to the TCP API, %d to the proxy), %d legitimate requests\n' \
  "$FLOOD" "$half" "$half" "$REQUESTS"
printf '%-40s %14s %14s %10s\n' "" "no flood" "during flood" "target"
printf '%-40s %13s%% %13s%% %10s\n' "legitimate requests via the proxy, ok" "$base_ok" "$flood_ok" "100%"
printf '%-40s %13s%% %13s%% %10s\n' "operator socket GET /v1/status, 200" "$base_answered" "$flood_answered" "100%"
printf '%-40s %12s ms %12s ms %10s\n' "operator socket GET /v1/status p50" "$base_p50" "$flood_p50" ""
printf '%-40s %12s ms %12s ms %10s\n' "operator socket GET /v1/status p99" "$base_p99" "$flood_p99" "< 100 ms"
printf '%-40s %12s ms %12s ms %10s\n' "operator socket GET /v1/status max" "$base_max" "$flood_max" ""
printf 'flood connections open at the end: %d; closed by wharf and re-opened: %d\n' "$held" "$refused"
printf 'descriptors: control plane %s, proxy %s\n' "$(fds "$control_pid")" "$( [ -n "$proxy_pid" ] && fds "$proxy_pid" || echo '?')"
