#!/usr/bin/env bash
# wharf-proxy against nginx, side by side in one run, in front of the same wharf-testbed
# upstream on loopback. wrk (keep-alive, same connections/threads/duration) hits the testbed
# directly, nginx (worker_processes auto, keep-alive upstream pool, access_log off) and
# wharf-proxy (a 90/10 split between two versions, metrics on). Prints requests/s and p99 for
# each, wharf/nginx throughput, and the p99 each proxy adds over direct.
# Targets: wharf/nginx >= 1.0; wharf's added p99 < 0.3 ms.
# The p99 under saturating load is mostly queueing for the two cores that wrk, the upstream
# and the proxy share, so the latency a hop adds is also measured without queueing: one
# connection, one request at a time (wrk -c1), direct and through each proxy, in one run.
# With ROUNDS > 1 the three targets are measured again in each round (nginx and wharf in
# alternating order, so a burst of background load does not always hit the same one) and
# the per-round ratios are listed. CPU time per request (user + system, from /proc) is shown
# for both proxies: on a shared, noisy machine it moves much less than requests/s does.
# Usage: scripts/bench/proxy.sh [DURATION] [CONNECTIONS] [THREADS] [ROUNDS]
#        (defaults 10s 50 1 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-10s}
CONNECTIONS=${2:-50}
THREADS=${3:-1}
ROUNDS=${4:-1}
command -v nginx >/dev/null && command -v wrk >/dev/null || apt-get install -y nginx wrk >/dev/null
cargo build -q --release -p wharf-proxy -p wharf-testbed
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

WHARF_LOG=warn "$bin/wharf-testbed" --port 0 --version 1.4.0 > "$work/testbed.out" 2>/dev/null &
pids+=($!)
until grep -q listening "$work/testbed.out" 2>/dev/null; do sleep 0.05; done
upstream=$(sed -E 's/listening on //' "$work/testbed.out")

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  upstream testbed { server $upstream; keepalive 256; }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://testbed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx/stderr" &
nginx_pid=$!
pids+=($nginx_pid)

wharf_port=$(free_port)
WHARF_LOG=warn "$bin/wharf-proxy" --admin-socket "$work/admin.sock" --state "$work/state.json" > "$work/proxy.out" &
wharf_pid=$!
pids+=($wharf_pid)
until grep -q "admin socket" "$work/proxy.out" 2>/dev/null; do sleep 0.05; done
curl -sf --unix-socket "$work/admin.sock" -X PUT http://proxy/v1/routes -d @- >/dev/null <<JSON
{"revision": 1, "services": {"api": {"listen": "127.0.0.1:$wharf_port", "versions": [
  {"name": "1.4.0", "weight": 90, "instances": ["$upstream"]},
  {"name": "1.5.0", "weight": 10, "instances": ["$upstream"]}]}}}
JSON
for port in "$nginx_port" "$wharf_port"; do
  until curl -sf "http://127.0.0.1:$port/" >/dev/null; do sleep 0.05; done
done

# wrk's p99 in milliseconds.
p99_ms() { awk '$1 == "99%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.3f", v }' "$1"; }
rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }

# CPU ticks (user + system) of a process and its children's threads.
ticks() {
  local total=0 pid stat
  for pid in "$@"; do
    for stat in /proc/"$pid"/task/*/stat; do
      total=$((total + $(sed 's/.*) //' "$stat" | awk '{ print $12 + $13 }')))
    done
  done
  echo "$total"
}
pids_of() { case $1 in nginx) echo "$nginx_pid" $(pgrep -P "$nginx_pid") ;; wharf) echo "$wharf_pid" ;; *) echo "" ;; esac; }
hz=$(getconf CLK_TCK)

declare -A ADDRESS=([direct]="$upstream" [nginx]="127.0.0.1:$nginx_port" [wharf]="127.0.0.1:$wharf_port")
for name in direct nginx wharf; do
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://${ADDRESS[$name]}/" >/dev/null # warm-up: pools and caches
done

declare -A RPS P99 CPU
ratios=()
for round in $(seq "$ROUNDS"); do
  order="direct nginx wharf"
  ((round % 2 == 0)) && order="direct wharf nginx"
  for name in $order; do
    procs=$(pids_of "$name")
    before=$([ -n "$procs" ] && ticks $procs || echo 0)
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://${ADDRESS[$name]}/" > "$work/$name.wrk"
    after=$([ -n "$procs" ] && ticks $procs || echo 0)
    RPS[$name]=$(rps "$work/$name.wrk")
    P99[$name]=$(p99_ms "$work/$name.wrk")
    count=$(awk '/requests in/ { print $1 }' "$work/$name.wrk")
    CPU[$name]=$([ -n "$procs" ] && awk -v t=$((after - before)) -v hz="$hz" -v n="$count" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }' || echo -)
  done
  ratio=$(awk -v w="${RPS[wharf]}" -v n="${RPS[nginx]}" 'BEGIN { printf "%.2f", w / n }')
  ratios+=("$ratio")
  if ((ROUNDS > 1)); then
    echo "round $round: direct ${RPS[direct]}/s, nginx ${RPS[nginx]}/s (p99 ${P99[nginx]} ms, ${CPU[nginx]} us CPU/req), wharf ${RPS[wharf]}/s (p99 ${P99[wharf]} ms, ${CPU[wharf]} us CPU/req): ${ratio}x"
  fi
done

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, keep-alive, on $(nproc) cores$( ((ROUNDS > 1)) && echo ", last of $ROUNDS rounds")"
printf '%-8s %12s %10s %16s %14s\n' target "requests/s" "p99 ms" "added p99 ms" "CPU us/req"
for name in direct nginx wharf; do
  added=$(awk -v a="${P99[$name]}" -v b="${P99[direct]}" 'BEGIN { printf "%.3f", a - b }')
  printf '%-8s %12s %10s %16s %14s\n' "$name" "${RPS[$name]}" "${P99[$name]}" "$added" "${CPU[$name]:--}"
done
awk -v w="${RPS[wharf]}" -v n="${RPS[nginx]}" 'BEGIN { printf "wharf/nginx throughput: %.2fx (target >= 1.0)\n", w / n }'
((ROUNDS > 1)) && echo "wharf/nginx throughput per round: ${ratios[*]}"
awk -v w="${P99[wharf]}" -v d="${P99[direct]}" -v n="${P99[nginx]}" 'BEGIN { printf "wharf added p99 over direct under saturating load: %.3f ms (nginx: %.3f ms); wharf/nginx p99: %.2f\n", w - d, n - d, w / n }'
# Latency a hop adds, without queueing: one connection, closed loop; ROUNDS times each in
# alternating order, the median of the rounds' p50 and p99 (one scheduling hiccup on a shared
# machine moves a single p99 by milliseconds).
declare -A P50_1 P99_1 P50_ALL P99_ALL
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for round in $(seq "$ROUNDS"); do
  order="direct nginx wharf"
  ((round % 2 == 0)) && order="direct wharf nginx"
  for name in $order; do
    wrk -t1 -c1 -d"$DURATION" --latency "http://${ADDRESS[$name]}/" > "$work/$name.c1.wrk"
    P99_ALL[$name]+=" $(p99_ms "$work/$name.c1.wrk")"
    P50_ALL[$name]+=" $(awk '$1 == "50%" { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } printf "%.3f", v }' "$work/$name.c1.wrk")"
  done
done
for name in direct nginx wharf; do
  P50_1[$name]=$(echo "${P50_ALL[$name]}" | median)
  P99_1[$name]=$(echo "${P99_ALL[$name]}" | median)
done
echo "one connection, one request at a time (wrk -t1 -c1 -d$DURATION, median of $ROUNDS rounds):"
printf '%-8s %10s %10s %16s %16s\n' target "p50 ms" "p99 ms" "added p50 ms" "added p99 ms"
for name in direct nginx wharf; do
  printf '%-8s %10s %10s %16s %16s\n' "$name" "${P50_1[$name]}" "${P99_1[$name]}" \
    "$(awk -v a="${P50_1[$name]}" -v b="${P50_1[direct]}" 'BEGIN { printf "%.3f", a - b }')" \
    "$(awk -v a="${P99_1[$name]}" -v b="${P99_1[direct]}" 'BEGIN { printf "%.3f", a - b }')"
done
((ROUNDS > 1)) && echo "p99 per round: direct${P99_ALL[direct]}; nginx${P99_ALL[nginx]}; wharf${P99_ALL[wharf]}"
awk -v w="${P99_1[wharf]}" -v d="${P99_1[direct]}" 'BEGIN { printf "wharf added p99 over direct, one request at a time: %.3f ms (target < 0.3)\n", w - d }'
counts=$(curl -sf --unix-socket "$work/admin.sock" http://proxy/v1/stats | python3 -c 'import json,sys; s=json.load(sys.stdin)["services"]["api"]["versions"]; print(", ".join("%s: %d" % (v, d["requests"]) for v, d in s.items()))')
echo "wharf split (requests per version): $counts"
