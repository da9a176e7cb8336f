#!/usr/bin/env bash
# Start-up time of `tidings serve` on an existing data directory: seconds from exec to the
# `listening` line, then a clean stop (SIGTERM), RUNS times. Used for docs/HISTORY.md:
#   target/release/examples/history_bench fill /tmp/h10m 10000000   # 10M events, crash-like exit
#   bench/startup.sh target/release/tidings /tmp/h10m 4
# The hub keeps all 10M events (--history-max-events/--history-max-bytes), so retention does
# not rewrite the directory between runs.
set -euo pipefail
bin=$1 dir=$2 runs=${3:-3}
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
for _ in $(seq "$runs"); do
    : >"$out"
    start=$(date +%s.%N)
    "$bin" serve --data-dir "$dir" --listen 127.0.0.1:0 --publish-key startup-measure-key-0123 \
        --history-max-events 10000000 --history-max-bytes 4GiB >"$out" 2>"$err" &
    pid=$!
    until grep -q listening "$out"; do sleep 0.005; done
    end=$(date +%s.%N)
    echo "to listening: $(echo "$end - $start" | bc) s; $(grep -o 'opened_ms=[0-9]*' "$err")"
    kill -TERM "$pid"
    wait "$pid"
done
