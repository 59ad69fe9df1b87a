#!/usr/bin/env bash
# Three hubs on one PostgreSQL database, on this machine, with an `echo` worker on each
# (docs/scaling.md). Usage: docs/three-hubs.sh postgres://USER@HOST:PORT/DB [path/to/hive]
# Ctrl-C stops everything with SIGTERM, so each hub drains before it exits.
set -euo pipefail
url=${1:?usage: $0 postgres://USER@HOST:PORT/DB [path/to/hive]}
hive=${2:-./target/release/hive}
base=/tmp/hive-three-hubs
mkdir -p "$base"
pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT INT TERM
for n in 1 2 3; do
    "$hive" serve --listen "127.0.0.1:770$n" --data-dir "$base/hub$n" \
        --store "$url" --hub-name "hub$n" &
    pids+=($!)
done
for n in 1 2 3; do
    for _ in $(seq 100); do
        "$hive" status --hub "http://127.0.0.1:770$n" > /dev/null 2>&1 && break
        sleep 0.1
    done
    "$hive" worker --hub "http://127.0.0.1:770$n" --capability echo --slots 4 --exec cat &
    pids+=($!)
done
echo "hubs on http://127.0.0.1:7701, :7702, :7703 (Ctrl-C stops them)"
"$hive" hubs --hub http://127.0.0.1:7701
wait
