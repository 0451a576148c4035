#!/usr/bin/env bash
# Crash detection under every simulated adversary kind against the quiet
# run, over many seeds: one seed's five crashes are too few to compare
# (an attack changes the random stream, so the crashes land elsewhere in
# the probe order).
#
# Usage: scripts/adversary-detection.sh [SEEDS] [OUT_DIR]
#   SEEDS    seeds 1..SEEDS per kind (default 20)
#   OUT_DIR  where the JSON reports go (default a temporary folder)
# Runs `sim membership --nodes 100 --duration 600 --crash 5 --crash-at 300
# [--adversary KIND --adversary-rate 1000] --seed S` with a release build,
# then prints per kind: the mean of the per-seed detection p50 and max, the
# pooled p50/p99 over every crash, and their ratios to the quiet run.
set -euo pipefail
seeds="${1:-20}"
out="${2:-$(mktemp -d)}"
case "$seeds" in '' | *[!0-9]*) echo "SEEDS must be a whole number" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
cargo build --release -p gossip-node >&2
bin="${CARGO_TARGET_DIR:-target}/release/gossip-node"
kinds=(none forge-dead forge-left forge-alive join-flood ping-flood reflect rumor-forge)
for kind in "${kinds[@]}"; do
  echo "== $kind" >&2
  for seed in $(seq 1 "$seeds"); do
    extra=()
    [ "$kind" != none ] && extra=(--adversary "$kind" --adversary-rate 1000)
    "$bin" sim membership --nodes 100 --duration 600 --crash 5 --crash-at 300 \
      "${extra[@]}" --format json --seed "$seed" >"$out/$kind-$seed.json"
  done
done
python3 - "$out" "$seeds" "${kinds[@]}" <<'PY'
import json, statistics, sys
out, seeds, kinds = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print("| kind | mean p50 (s) | mean max (s) | pooled p50 / p99 (s) | p50 ratio | mean-max ratio | healthy down | fakes alive max | reflection max |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
base = None
for kind in kinds:
    p50, mx, pooled, down, fakes, refl = [], [], [], 0, 0, 0.0
    for seed in range(1, seeds + 1):
        d = json.load(open(f"{out}/{kind}-{seed}.json"))
        p50.append(d["detection_s"]["p50"]); mx.append(d["detection_s"]["max"])
        pooled += [c["all_dead_s"] for c in d["detection_detail"]]
        down += d.get("healthy_members_down") or 0
        fakes = max(fakes, d.get("fake_members_alive_max") or 0)
        refl = max(refl, d.get("reflection_ratio") or 0.0)
    pooled.sort()
    q = lambda f: pooled[min(len(pooled) - 1, int(f * len(pooled)))]
    row = (statistics.mean(p50), statistics.mean(mx), q(0.5), q(0.99))
    base = base or row
    quiet = kind == "none"
    print(f"| {kind} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} / {row[3]:.2f} | {row[2] / base[2]:.2f} | {row[1] / base[1]:.2f} | "
          + ("- | - | -" if quiet else f"{down} | {fakes} | {refl:.3f}") + " |")
print(f"(reports in {out})", file=sys.stderr)
PY
