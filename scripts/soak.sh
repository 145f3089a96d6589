#!/usr/bin/env bash
# The server soak of `make bench` (also runs alone): builds the release
# server, starts it on a free 127.0.0.1 port with a fresh database, and runs
# www/bench/soak.mjs against it: 500 wrong logins, 10,000 PATCHes, 1,000
# comments on one record, with the server's RSS and the database's growth
# after each. It reports; it never fails because a goal is missed.
#
#   SOAK_JSON=path   also write the raw results there
#                    (default target/bench/soak.json)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

cargo build --release -p crm-sync-server >&2

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# The flood must reach the password checks: the per-address limit is lifted
# for this run (the per-username one never triggers: every name is new).
RUST_LOG=warn target/release/crm-sync-server --host 127.0.0.1 --port 0 --db "$WORK/crm.db" \
  --demo --static "$WORK/none" --sheet "$WORK/sheet.csv" \
  --login-failures-per-address 1000000 >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 300); do
  URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.out" 2>/dev/null | head -1 || true)
  [ -n "$URL" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  sleep 0.1
done
if [ -z "$URL" ]; then
  echo "soak: the server did not start:" >&2
  tail -20 "$WORK/server.log" >&2
  exit 1
fi

mkdir -p target/bench
SOAK_BASE_URL=$URL SOAK_PID=$SERVER_PID SOAK_DB=$WORK/crm.db \
  SOAK_JSON=${SOAK_JSON:-target/bench/soak.json} \
  timeout 900 node www/bench/soak.mjs
