#!/usr/bin/env bash
# `wharf validate` on hostile manifests: 10k and 100k unknown keys, 10k and 100k YAML anchors
# (each with an alias that copies it), in block style and all on one line (flow style). Validation must be linear: a CI that validates untrusted
# pull requests must not stall (target: 100k keys in < 1 s). Prints wall time per case, the
# manifest's size and wharf's exit code (2: the manifest was refused, as unknown keys are).
# Usage: scripts/bench/validate.sh            (builds and times target/release/wharf)
#        WHARF=/path/to/wharf scripts/bench/validate.sh   (times another build, e.g. main's)
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${WHARF:-}" ]; then
  cargo build -q --release -p wharf
  WHARF=$PWD/target/release/wharf
fi
# A case still running after LIMIT seconds is stopped and printed as `>LIMIT`.
LIMIT=${LIMIT:-120}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

generate() { # kind n
  python3 - "$1" "$2" <<'PY'
import sys
kind, n = sys.argv[1], int(sys.argv[2])
out = ["name: shop", "services:", "  api:", "    command: [shop-api]"]
if kind == "keys":
    out += [f"unknown_key_{i}: {i}" for i in range(n)]
elif kind == "flow-anchors":
    # All on one line, as a generated file may be: columns are counted on that line.
    out.append("x-anchors: {" + ", ".join(f"k{i}: &a{i} v{i}, c{i}: *a{i}" for i in range(n)) + "}")
else:
    out.append("x-anchors:")
    for i in range(n):
        out.append(f"  - &a{i} v{i}")
        out.append(f"  - *a{i}")
print("\n".join(out))
PY
}

printf '%-16s %10s %10s %6s\n' case bytes seconds exit
for kind in keys anchors flow-anchors; do
  for n in 10000 100000; do
    file="$work/$kind-$n.yaml"
    generate "$kind" "$n" > "$file"
    start=$(date +%s%N)
    set +e
    timeout "$LIMIT" "$WHARF" -f "$file" validate >/dev/null 2>&1
    code=$?
    set -e
    ns=$(( $(date +%s%N) - start ))
    seconds=$(awk -v ns="$ns" 'BEGIN { printf "%.3f", ns / 1e9 }')
    [ "$code" -eq 124 ] && seconds=">$LIMIT" code=-
    printf '%-16s %10d %10s %6s\n' "$kind $n" "$(stat -c %s "$file")" "$seconds" "$code"
  done
done
echo "target: 100k keys < 1 s"
