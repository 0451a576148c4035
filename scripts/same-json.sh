#!/usr/bin/env bash
# Replays the README's simulator scenarios with one gossip-node binary and
# writes each JSON report, CPU and wall-clock fields removed, to a folder.
# Run it with the binary before and after a refactor and diff the folders:
# behaviour is unchanged when every file is identical.
#
#   scripts/same-json.sh BINARY OUT_DIR
set -euo pipefail
bin=${1:?usage: same-json.sh BINARY OUT_DIR}
out=${2:?usage: same-json.sh BINARY OUT_DIR}
mkdir -p "$out"
# Fields that measure this machine rather than the protocol.
strip='walk(if type == "object" then with_entries(select(.key | test("cpu|wall|per_cpu|elapsed|rss"; "i") | not)) else . end)'
run() {
    local name=$1
    shift
    "$bin" sim "$@" --format json | jq -S "$strip" >"$out/$name.json"
    echo "$name"
}
for seed in 1 2 3; do
    run "membership-loss-crash-seed$seed" membership --nodes 100 --loss 0.05 --crash 5 --duration 3600 --seed "$seed"
done
run membership-1000-crash membership --nodes 1000 --crash 5 --duration 180
run membership-partition membership --nodes 100 --partition-at 30 --heal-at 90 --duration 300
run membership-idle membership --nodes 100
run membership-slow membership --nodes 100 --slow 1 --duration 600
run dissemination-rumor-push dissemination --nodes 1000 --strategy rumor --mode push --termination feedback-coin --k 2 --runs 50
run dissemination-ae-pushpull dissemination --nodes 1000 --strategy anti-entropy --mode push-pull --runs 50
run dissemination-full dissemination --nodes 1000 --strategy rumor --k 2 --loss 0.05 --full --runs 5
for algorithm in push-sum push-pull flow-updating; do
    run "aggregation-full-$algorithm" aggregation --nodes 1000 --algorithm "$algorithm" --rounds 100 --full
    run "aggregation-math-$algorithm" aggregation --nodes 10000 --algorithm "$algorithm" --function count --churn 0.01 --rounds 100
done
