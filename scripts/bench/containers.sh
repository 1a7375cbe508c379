#!/usr/bin/env bash
# Containers: `wharf up -d` until every service is ready, for a stack of N containers (default
# 10; the testbed image, each with an HTTP ready probe), beside `docker-compose up -d` on the
# same image followed by polling each container's /ready until all answer (Debian's
# docker-compose is v1, which has no `--wait`); then the control plane's RSS while it
# supervises M containers (default 50, one service with M replicas behind the proxy).
# Needs a running dockerd (scripts/test starts one). Usage: scripts/bench/containers.sh [N] [M]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-10}
M=${2:-50}
PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build -q --release -p wharf -p wharf-testbed -p wharf-proxy
else
  cargo build -q -p wharf -p wharf-testbed -p wharf-proxy
fi
bin=$PWD/target/$PROFILE
export PATH=$bin:$PATH
docker info >/dev/null 2>&1 || { echo "dockerd does not answer" >&2; exit 1; }
command -v docker-compose >/dev/null 2>&1 \
  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose; }

work=$(mktemp -d)
cleanup() {
  (cd "$work/wharf" 2>/dev/null && wharf down >/dev/null 2>&1 || true)
  (cd "$work/rss" 2>/dev/null && wharf down >/dev/null 2>&1 || true)
  (cd "$work/compose" 2>/dev/null && docker-compose down >/dev/null 2>&1 || true)
  rm -rf "$work"
}
trap cleanup EXIT

# The testbed as an image: its binary and shared libraries in a rootfs.
image=wharf-bench/testbed:$(stat -c %Y "$bin/wharf-testbed")
if ! docker image inspect "$image" >/dev/null 2>&1; then
  root=$work/rootfs
  mkdir -p "$root/tmp"
  for f in "$bin/wharf-testbed" $(ldd "$bin/wharf-testbed" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$f")"
    cp "$f" "$root$f"
  done
  tar -C "$root" -c . | docker import \
    --change "ENTRYPOINT [\"$bin/wharf-testbed\", \"--host\", \"0.0.0.0\"]" - "$image" >/dev/null
fi

free_ports() { python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

read -r -a ports <<< "$(free_ports "$N")"
mkdir -p "$work/wharf" "$work/compose"
{
  echo "name: bench$$"
  echo "services:"
  for i in $(seq 0 $((N - 1))); do
    printf '  s%d:\n    image: %s\n    pull_policy: never\n    port: %d\n    container_port: 8080\n    probes:\n      ready: {http: {path: /ready}, interval: 200ms}\n' \
      "$i" "$image" "${ports[$i]}"
  done
} > "$work/wharf/wharf.yaml"
{
  echo "version: '3'"
  echo "services:"
  for i in $(seq 0 $((N - 1))); do
    printf '  s%d:\n    image: %s\n    environment: [PORT=8080]\n    ports: ["127.0.0.1:%d:8080"]\n' "$i" "$image" "${ports[$i]}"
  done
} > "$work/compose/docker-compose.yml"

start=$(date +%s%N)
(cd "$work/wharf" && wharf up -d --wait-timeout 120s >"$work/up.txt" 2>&1) || { cat "$work/up.txt" >&2; exit 1; }
wharf_ms=$(ms_since "$start")
(cd "$work/wharf" && wharf down >/dev/null)

start=$(date +%s%N)
(cd "$work/compose" && docker-compose -p "bench$$" up -d >/dev/null 2>&1)
for port in "${ports[@]}"; do
  until curl -sf "http://127.0.0.1:$port/ready" >/dev/null; do sleep 0.02; done
done
compose_ms=$(ms_since "$start")
(cd "$work/compose" && docker-compose -p "bench$$" down >/dev/null 2>&1)

mkdir -p "$work/rss"
read -r public <<< "$(free_ports 1)"
printf 'name: rss%s\nservices:\n  api:\n    image: %s\n    pull_policy: never\n    port: %d\n    container_port: 8080\n    replicas: %d\n    probes:\n      ready: {http: {path: /ready}, interval: 1s}\n' \
  "$$" "$image" "$public" "$M" > "$work/rss/wharf.yaml"
(cd "$work/rss" && wharf up -d --wait-timeout 300s >/dev/null)
pid=$(cat "$work/rss/.wharf/control.pid")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")

echo "containers: $N services to all ready: wharf up -d ${wharf_ms} ms, docker-compose up -d + /ready polling ${compose_ms} ms ($PROFILE build)"
echo "control plane RSS supervising $M containers: $((rss_kb / 1024)) MB"
