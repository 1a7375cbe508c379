#!/usr/bin/env bash
# `wharf gate check` on a 50 MB SARIF file against `jq '[.runs[].results[]] | length'` on the
# same file: wall time and peak RSS side by side, as ratios. wharf streams `runs[].results[]`
# (a small record per result, messages / locations / code flows skipped as they are read),
# and also resolves every result's effective level through its rule and hashes the file; jq
# builds the whole document in memory.
# Usage: scripts/bench/gates.sh                 (builds and times target/release/wharf)
#        WHARF=/path/to/wharf scripts/bench/gates.sh
#        MB=200 scripts/bench/gates.sh          (another file size)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v jq >/dev/null || { echo "jq is needed: apt-get install -y jq" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time is needed: apt-get install -y time" >&2; exit 2; }
if [ -z "${WHARF:-}" ]; then
  cargo build -q --release -p wharf
  WHARF=$PWD/target/release/wharf
fi
MB=${MB:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A CodeQL-shaped log: rules in an extension with default levels and security-severity,
# results referring to them by index, no level of their own, each with a location and a code
# flow (what makes real SARIF files big).
python3 - "$work/big.sarif" "$MB" <<'PY'
import json, sys
path, mb = sys.argv[1], int(sys.argv[2])
levels = ["note", "warning", "error"]
rules = [{"id": f"js/rule-{i}", "name": f"js/rule-{i}",
          "shortDescription": {"text": f"Rule {i}"},
          "defaultConfiguration": {"enabled": True, "level": levels[i % 3]},
          "properties": {"tags": ["security"], "security-severity": f"{(i % 100) / 10:.1f}"}}
         for i in range(300)]
with open(path, "w") as f:
    f.write('{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [{"tool": ')
    f.write(json.dumps({"driver": {"name": "CodeQL", "rules": []},
                        "extensions": [{"name": "codeql/javascript-queries", "rules": rules}]}))
    f.write(', "results": [')
    target = mb * 1024 * 1024
    i = 0
    while f.tell() < target:
        r = i % 300
        loc = {"physicalLocation": {"artifactLocation": {"uri": f"src/module{i % 997}/file{i % 89}.js", "uriBaseId": "%SRCROOT%"},
                                    "region": {"startLine": i % 4000 + 1, "startColumn": 5, "endColumn": 42}}}
        result = {"ruleId": f"js/rule-{r}", "ruleIndex": r,
                  "rule": {"id": f"js/rule-{r}", "index": r, "toolComponent": {"index": 0}},
                  "message": {"text": f"Untrusted data flows from [a user-provided value](1) to this sink ({i})."},
                  "locations": [loc],
                  "partialFingerprints": {"primaryLocationLineHash": f"{i:016x}:1"},
                  "codeFlows": [{"threadFlows": [{"locations": [{"location": loc}] * 3}]}]}
        f.write(("," if i else "") + json.dumps(result))
        i += 1
    f.write("]}]}\n")
PY
cat > "$work/wharf.yaml" <<'YAML'
name: bench
services:
  api:
    command: [sleep, "1"]
gates:
  release:
    - {name: no serious findings, sarif: {max_level: warning, max_security_severity: 6.9}}
YAML
size=$(stat -c %s "$work/big.sarif")

measure() { # label, command...: prints "seconds kbytes" and keeps the command's stdout in $work/out
  local label=$1; shift
  /usr/bin/time -v -o "$work/time.$label" "$@" >"$work/out.$label" 2>/dev/null || true
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.$label" |
         awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.$label")
  echo "$wall $rss"
}

read -r w_wall w_rss < <(cd "$work" && measure wharf "$WHARF" --output json gate check release \
  --version 1 --service api --input big.sarif)
read -r j_wall j_rss < <(measure jq jq '[.runs[].results[]] | length' "$work/big.sarif")
w_count=$(sed -n 's/.*"measured": "\([0-9]*\) findings.*/\1/p' "$work/out.wharf" | head -1)
j_count=$(cat "$work/out.jq")
[ "$w_count" = "$j_count" ] || { echo "result counts differ: wharf $w_count, jq $j_count" >&2; exit 1; }

printf 'SARIF file: %d bytes, %s results\n' "$size" "$j_count"
printf '%-34s %10s %14s\n' tool 'wall (s)' 'peak RSS (MB)'
printf '%-34s %10.2f %14.1f\n' 'wharf gate check (streamed)' "$w_wall" "$(echo "$w_rss / 1024" | bc -l)"
printf '%-34s %10.2f %14.1f\n' "jq '[.runs[].results[]] | length'" "$j_wall" "$(echo "$j_rss / 1024" | bc -l)"
printf 'ratio wharf/jq: time %.2f, peak RSS %.3f\n' \
  "$(echo "$w_wall / $j_wall" | bc -l)" "$(echo "$w_rss / $j_rss" | bc -l)"
