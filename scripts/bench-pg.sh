#!/usr/bin/env bash
# The engine rows of `make bench` (also runs alone): PATCHes per second of the
# release server on SQLite, on PostgreSQL with one instance, and on
# PostgreSQL with two instances sharing the database, measured the same way
# (www/bench/patch-rate.mjs: 16 loops, each PATCHing its own customer, 5 s).
# The cluster is a throwaway one (scripts/pg-cluster.sh) with PostgreSQL's
# default settings (durable commits). It reports; it never fails because a
# goal is missed.
#
#   PG_BENCH_PORT (default 18946)   the cluster's port
#   BENCH_SERVER_PORT               the first server's port (the others take
#                                   the next ones); default: any free port
#   PATCH_CLIENTS, PATCH_SECONDS    passed to patch-rate.mjs
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release -p crm-sync-server >&2

WORK=$(mktemp -d)
PIDS=()
# Not inside $WORK: the postgres user must be able to reach it.
PG_DIR=$(mktemp -d /tmp/crm-pg-bench.XXXXXX); rmdir "$PG_DIR"
cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -d "$PG_DIR" ] && scripts/pg-cluster.sh stop "$PG_DIR"
  rm -rf "$WORK"
}
trap cleanup EXIT

NEXT_PORT=${BENCH_SERVER_PORT:-0}
# Starts one server on --db $1 (log name $2) and sets URL to its address.
# Not called in $(...): a subshell would lose its pid, and the server would
# outlive the run.
start() {
  local port=$NEXT_PORT
  [ "$NEXT_PORT" = 0 ] || NEXT_PORT=$((NEXT_PORT + 1))
  RUST_LOG=warn target/release/crm-sync-server --host 127.0.0.1 --port "$port" --db "$1" --demo \
    --static "$WORK/none" --sheet "$WORK/$2.csv" >"$WORK/$2.out" 2>"$WORK/$2.log" &
  PIDS+=($!)
  local url=
  for _ in $(seq 1 300); do
    url=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/$2.out" 2>/dev/null | head -1 || true)
    [ -n "$url" ] && { URL=$url; return 0; }
    sleep 0.1
  done
  echo "bench-pg: server $2 did not start:" >&2; tail -20 "$WORK/$2.log" >&2; return 1
}

stop_all() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  PIDS=()
}

row() { # label json
  node -e 'const r = JSON.parse(process.argv[2]);
    console.log(`  ${process.argv[1].padEnd(34)} ${String(r.perSecond).padStart(6)} PATCH/s  (${r.patches} in ${r.seconds} s, ${r.clients} clients, ${r.errors} errors)`)' "$1" "$2"
}

echo "== server engines: PATCH/s (release build, www/bench/patch-rate.mjs)"
start "$WORK/crm.db" sqlite; a=$URL
row "SQLite, 1 instance" "$(node www/bench/patch-rate.mjs "$a")"
stop_all

base=$(scripts/pg-cluster.sh start "$PG_DIR" "${PG_BENCH_PORT:-18946}")
psql -q "$base" -c "CREATE DATABASE one" -c "CREATE DATABASE two" >/dev/null
start "${base%/postgres}/one" pg-one; a=$URL
row "PostgreSQL, 1 instance" "$(node www/bench/patch-rate.mjs "$a")"
stop_all
# One after the other: each seeds the demo data it finds missing.
start "${base%/postgres}/two" pg-two-a; a=$URL
start "${base%/postgres}/two" pg-two-b; b=$URL
row "PostgreSQL, 2 instances" "$(node www/bench/patch-rate.mjs "$a" "$b")"
