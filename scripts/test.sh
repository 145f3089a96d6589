#!/usr/bin/env bash
# Runs every suite of crm-sync and ends with one line `N passed, N failed`
# summing them all. Each lint check counts as one test. Exits non-zero if
# anything failed. Logs of each suite go to target/test-logs/.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CHROMEDRIVER=/usr/bin/chromedriver
# The whole browser run gets this long (the runner's default is 20 s; the
# tab-lock suite alone waits out several 3 s leases; three engines share the
# cores).
export WASM_BINDGEN_TEST_TIMEOUT=600
LOGS=target/test-logs
mkdir -p "$LOGS"
BROWSER_PORT=18931
# The browser suite's other engines and the demo's WebDriver smoke: a server
# (and for WebKit a driver) each.
FIREFOX_PORT=19050
WEBKIT_PORT=19051
WEBKIT_DRIVER_PORT=19052
BROWSER_ENGINES=(chromium firefox webkit)
E2E_PORT=18932
FUZZ_PORT=18933
TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()
PIDS=()
stop_pids() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done; }
# What the run makes in the temporary directory (the servers' databases,
# Chromium's profiles and the drivers' sessions, the e2e tests' own servers,
# the fuzzer's files) goes into one directory of its own, TMPDIR for
# everything started here, removed when the run ends: a driver killed with
# its browser leaves the browser's profile behind. The PostgreSQL cluster
# lives beside it in /tmp (its server runs as another user), stopped and
# removed if a suite left it.
RUN_TMP=$(mktemp -d "${TMPDIR:-/tmp}/crm-sync-test.XXXXXX")
export TMPDIR=$RUN_TMP
PG_DIR=
cleanup() {
  stop_pids
  if [ -n "$PG_DIR" ]; then scripts/pg-cluster.sh stop "$PG_DIR" 2>/dev/null; fi
  rm -rf "$RUN_TMP"
}
trap cleanup EXIT

# The free space on the disk that holds target/: a run that fails without
# counting anything names it, so that a full disk shows in the log.
disk_free() { df -Pk . | awk 'NR == 2 { printf "disk: %.1f GB free\n", $4 / 1048576 }'; }

record() { # name passed failed seconds
  TOTAL_PASSED=$((TOTAL_PASSED + $2)); TOTAL_FAILED=$((TOTAL_FAILED + $3))
  SUMMARY+=("$(printf '%-22s %4d passed, %3d failed  (%ds)' "$1" "$2" "$3" "$4")")
  printf '== %-20s %d passed, %d failed (%ds)\n' "$1" "$2" "$3" "$4"
}

# A check passes or fails as a whole.
check() { # name command...
  local name=$1; shift; local t0=$SECONDS
  if "$@" >"$LOGS/$name.log" 2>&1; then record "$name" 1 0 $((SECONDS - t0));
  else record "$name" 0 1 $((SECONDS - t0)); tail -40 "$LOGS/$name.log"; disk_free; fi
}

# Sums libtest's "test result: ... N passed; M failed" lines (cargo test and
# wasm-bindgen-test-runner print the same). A run that failed without any
# count (a build error) counts as one failure.
suite_cargo() { # name command...
  local name=$1; shift; local t0=$SECONDS
  "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
  count_cargo "$name" "$rc" $((SECONDS - t0))
}

# The counts of a finished run's log, $LOGS/name.log.
count_cargo() { # name exit-code seconds
  local name=$1 rc=$2 secs=$3
  local p f
  p=$(grep -Eo '[0-9]+ passed' "$LOGS/$name.log" | awk '{s+=$1} END {print s+0}')
  f=$(grep -Eo '[0-9]+ failed' "$LOGS/$name.log" | awk '{s+=$1} END {print s+0}')
  local uncounted=
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; uncounted=1; fi
  record "$name" "$p" "$f" "$secs"
  if [ "$rc" != 0 ]; then grep -E '^(error|test .* FAILED|failures:|---- )' -A12 "$LOGS/$name.log" | head -80; fi
  if [ -n "$uncounted" ]; then disk_free; fi
}

# node --test (TAP or spec reporter) summary lines.
suite_node() { # name command...
  local name=$1; shift; local t0=$SECONDS
  "$@" >"$LOGS/$name.log" 2>&1; local rc=$?
  local p f
  p=$(grep -Eo '^(# |ℹ )pass [0-9]+' "$LOGS/$name.log" | awk '{s+=$NF} END {print s+0}')
  f=$(grep -Eo '^(# |ℹ )fail [0-9]+' "$LOGS/$name.log" | awk '{s+=$NF} END {print s+0}')
  local uncounted=
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; uncounted=1; fi
  record "$name" "$p" "$f" $((SECONDS - t0))
  if [ "$rc" != 0 ]; then tail -60 "$LOGS/$name.log"; fi
  if [ -n "$uncounted" ]; then disk_free; fi
}

# Starts the reference server in the background on a fresh database and
# waits until it answers.
start_server() { # port static-dir extra-args...
  local port=$1 dir=$2; shift 2
  local db
  db=$(mktemp -d)/crm.db
  target/debug/crm-sync-server --port "$port" --db "$db" --demo --sheet "${db%.db}.csv" \
    --static "$dir" "$@" >"$LOGS/server-$port.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/api/login" -X POST \
      -H 'content-type: application/json' -d '{"username":"alice","password":"demo"}' 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "server on port $port did not start:"; tail -20 "$LOGS/server-$port.log"; return 1
}

# Schemathesis (scripts/setup.sh fuzz) against a fresh reference server,
# from the server's own /api/openapi.json, with every check. It counts one
# test per API operation (its JUnit report: an operation with any failure or
# error fails). Settings and hooks, each with its reason, are in server/fuzz/.
# The fuzz server gets login throttling it cannot trip: the fuzzer tries
# thousands of random usernames and passwords from one address, which would
# otherwise turn every later login test into a 429 (documented, but it would
# hide the login route from the fuzzer). Every other limit stays as shipped.
# FUZZ_EXAMPLES and FUZZ_SEED override the budget and the seed.
suite_fuzz() {
  local t0=$SECONDS name=fuzz dir junit token
  dir=$(pwd)/target/fuzz-work; junit=$dir/junit.xml
  mkdir -p "$dir"; rm -f "$junit"
  if ! cargo build --quiet -p crm-sync-server >"$LOGS/$name.log" 2>&1 ||
     ! start_server "$FUZZ_PORT" /nonexistent \
       --login-failures-per-user 1000000 --login-failures-per-address 1000000 >>"$LOGS/$name.log" 2>&1; then
    record "$name" 0 1 $((SECONDS - t0)); tail -20 "$LOGS/$name.log"; disk_free; return
  fi
  local pid=${PIDS[${#PIDS[@]}-1]}
  token=$(curl -fsS "http://127.0.0.1:$FUZZ_PORT/api/login" -H 'content-type: application/json' \
    -d '{"username":"alice","password":"demo"}' | sed -E 's/.*"token":"([^"]+)".*/\1/')
  # Run from target/fuzz-work: Schemathesis keeps .schemathesis/ and
  # .hypothesis/ in its working directory. One worker: Hypothesis' lambda
  # descriptions call ast.parse, which CPython 3.11 can fail with "AST
  # constructor recursion depth mismatch" when two threads parse at once.
  # Excluded: POST /api/logout, which would revoke the fuzzer's own token
  # and turn the rest of the run into 401s (server/tests/protocol.rs covers it).
  (cd "$dir" && SCHEMATHESIS_HOOKS="$OLDPWD/server/fuzz/hooks.py" \
    "$OLDPWD/target/fuzz-venv/bin/schemathesis" --config-file "$OLDPWD/server/fuzz/schemathesis.toml" \
    run "http://127.0.0.1:$FUZZ_PORT/api/openapi.json" --url "http://127.0.0.1:$FUZZ_PORT" \
    -H "Authorization: Bearer $token" \
    --checks all --exclude-checks positive_data_acceptance \
    --exclude-path /api/logout \
    --workers 1 --max-examples "${FUZZ_EXAMPLES:-120}" ${FUZZ_SEED:+--seed "$FUZZ_SEED"} \
    --request-timeout 10 --generation-database none \
    --report junit --report-junit-path "$junit") >>"$LOGS/$name.log" 2>&1
  local rc=$?
  kill "$pid" 2>/dev/null
  local tests=0 failed=0
  if [ -f "$junit" ]; then
    tests=$(grep -o '<testsuite [^>]*' "$junit" | grep -Eo ' tests="[0-9]+"' | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
    # One count per failing test case, as the JUnit file lists them.
    failed=$(awk 'BEGIN{RS="</testcase>"} /<testcase/ && /<(failure|error)/ {n++} END {print n+0}' "$junit")
  fi
  local uncounted=
  if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; uncounted=1; fi
  record "$name" $((tests - failed < 0 ? 0 : tests - failed)) "$failed" $((SECONDS - t0))
  if [ "$rc" != 0 ]; then awk '/^=+ (FAILURES|ERRORS)/,0' "$LOGS/$name.log" | grep -v '^\s*$' | head -80; fi
  if [ -n "$uncounted" ]; then disk_free; fi
}

# One engine's browser suite, in the background: its own fresh server, its
# driver, and the run; leaves $LOGS/browser-ENGINE.{log,rc,secs}. The
# runner's page server has been seen to stall serving the JS snippets, so
# that no test starts at all ("Failed to detect test as having been run", no
# test line). That is the runner, not a test: the suite runs once more and
# its count replaces the stalled run's (kept as browser-ENGINE-stalled.log).
browser_engine() { # chromium | firefox | webkit
  local engine=$1 name=browser-$1 t0=$SECONDS port driver_pid=
  local log=$LOGS/$name.log
  PIDS=(); trap stop_pids EXIT  # a subshell: only its own server and driver
  rm -f "$LOGS/$name.rc" "$LOGS/$name.secs" "$LOGS/$name-stalled.log"
  local args=(--headless --mode no-install . --test browser)
  case $engine in
    chromium) port=$BROWSER_PORT; args=(--chrome "${args[@]}")
      need_files "$log" /usr/bin/chromium "$CHROMEDRIVER" || { echo 1 >"$LOGS/$name.rc"; return; } ;;
    firefox) port=$FIREFOX_PORT; args=(--firefox "${args[@]}")
      need_files "$log" "$(command -v firefox-esr || echo firefox-esr)" "$(command -v geckodriver || echo geckodriver)" ||
        { echo 1 >"$LOGS/$name.rc"; return; }
      export GECKODRIVER; GECKODRIVER=$(command -v geckodriver) ;;
    webkit) port=$WEBKIT_PORT; args=(--safari --safaridriver /usr/bin/WebKitWebDriver "${args[@]}")
      need_files "$log" /usr/bin/WebKitWebDriver "$(command -v xvfb-run || echo xvfb-run)" ||
        { echo 1 >"$LOGS/$name.rc"; return; }
      xvfb-run -a /usr/bin/WebKitWebDriver --port="$WEBKIT_DRIVER_PORT" >"$LOGS/webkitdriver.log" 2>&1 &
      driver_pid=$!; PIDS+=("$driver_pid")
      export SAFARIDRIVER_REMOTE=http://127.0.0.1:$WEBKIT_DRIVER_PORT ;;
  esac
  if ! start_server "$port" /nonexistent --cors --sheet-latency-ms 800 >"$log" 2>&1; then
    echo 1 >"$LOGS/$name.rc"; stop_tree "$driver_pid"; return
  fi
  local server_pid=${PIDS[${#PIDS[@]}-1]} rc
  for attempt in 1 2; do
    CRM_TEST_SERVER="http://127.0.0.1:$port" wasm-pack test "${args[@]}" >"$log" 2>&1; rc=$?
    if [ "$attempt" = 1 ] && grep -q 'Failed to detect test as having been run' "$log" &&
       ! grep -qE '^test .* (ok|FAIL)$' "$log"; then
      cp "$log" "$LOGS/$name-stalled.log"; continue
    fi
    break
  done
  kill "$server_pid" 2>/dev/null
  stop_tree "$driver_pid"
  echo $((SECONDS - t0)) >"$LOGS/$name.secs"
  echo "$rc" >"$LOGS/$name.rc"
}

# Fails (writing why into log) unless every file named exists.
need_files() { # log file...
  local log=$1; shift
  for f in "$@"; do
    if [ ! -x "$f" ]; then
      echo "missing: $f (scripts/setup.sh browsers installs it)" >"$log"; return 1
    fi
  done
}

# Stops a process started here and what it started (xvfb-run's Xvfb and
# driver), by their ids.
stop_tree() { # pid
  local pid=$1
  [ -n "$pid" ] || return 0
  local kids
  kids=$(pgrep -P "$pid" 2>/dev/null)
  for k in $kids; do stop_tree "$k"; done
  kill "$pid" 2>/dev/null
}

# The server suite once more on PostgreSQL (server/tests/common: each test
# in a fresh schema), with the suites only PostgreSQL runs (two instances on
# one database, server/tests/instances.rs). The cluster is a throwaway one
# (scripts/pg-cluster.sh) made for this suite and removed after.
# PG_TEST_PORT overrides its port.
suite_server_pg() {
  local t0=$SECONDS name=server-pg url
  PG_DIR=$(mktemp -d /tmp/crm-pg.XXXXXX); rmdir "$PG_DIR"
  if ! url=$(scripts/pg-cluster.sh start "$PG_DIR" "${PG_TEST_PORT:-18945}" 2>"$LOGS/$name-cluster.log"); then
    scripts/pg-cluster.sh stop "$PG_DIR"; PG_DIR=
    record "$name" 0 1 $((SECONDS - t0)); tail -20 "$LOGS/$name-cluster.log"; disk_free; return
  fi
  CRM_TEST_POSTGRES=$url suite_cargo "$name" cargo test -p crm-sync-server -- --include-ignored
  scripts/pg-cluster.sh stop "$PG_DIR"; PG_DIR=
}

echo "== crm-sync: every suite (logs in $LOGS/)"
disk_free
check fmt cargo fmt --all --check
check clippy-host cargo clippy --workspace --all-targets -- -D warnings
check clippy-wasm cargo clippy -p crm-sync --target wasm32-unknown-unknown --lib --test browser -- -D warnings
# No file names a path (a doc, a source, a folder) that is not in the repository.
check links node scripts/check-links.mjs
suite_cargo native cargo test --workspace --exclude crm-sync-server
suite_cargo server cargo test -p crm-sync-server
suite_server_pg
suite_fuzz

# The browser suite in Chromium, Firefox and WebKit at once, each against a
# fresh server of its own (a shared one would let one engine's records meet
# another's). An engine or driver that is missing fails its suite; nothing
# is skipped. Firefox runs headless through geckodriver with the profile
# preferences of webdriver.json; WebKit runs WebKitGTK's MiniBrowser through
# WebKitWebDriver, which needs a display: Xvfb.
if cargo build --quiet -p crm-sync-server >"$LOGS/server-build.log" 2>&1; then
  # Built once here, so that the three runs below do not queue on cargo's lock.
  # (wasm-pack's two steps, `cargo build --tests` and `cargo test`.)
  if ! { CARGO_BUILD_TARGET=wasm32-unknown-unknown cargo build --tests --test browser &&
         cargo test --target wasm32-unknown-unknown --test browser --no-run; } >"$LOGS/browser-build.log" 2>&1; then
    for engine in "${BROWSER_ENGINES[@]}"; do record "browser-$engine" 0 1 0; done
    grep -E '^error' -A12 "$LOGS/browser-build.log" | head -60; disk_free
  else
    t0=$SECONDS
    engine_pids=()
    for engine in "${BROWSER_ENGINES[@]}"; do browser_engine "$engine" & engine_pids+=($!); done
    wait "${engine_pids[@]}"
    for engine in "${BROWSER_ENGINES[@]}"; do
      if [ -f "$LOGS/browser-$engine-stalled.log" ]; then
        echo "== browser-$engine: the test runner stalled before any test ran; the suite ran again"
      fi
      count_cargo "browser-$engine" "$(cat "$LOGS/browser-$engine.rc" 2>/dev/null || echo 1)" "$(cat "$LOGS/browser-$engine.secs" 2>/dev/null || echo 0)"
    done
    echo "== browser stage: $((SECONDS - t0))s for ${BROWSER_ENGINES[*]} side by side"
  fi
else
  for engine in "${BROWSER_ENGINES[@]}"; do record "browser-$engine" 0 1 0; done
  cat "$LOGS/server-build.log"; disk_free
fi

if make --no-print-directory www >"$LOGS/www-build.log" 2>&1 &&
   start_server "$E2E_PORT" www/dist --sheet-latency-ms 1500; then
  E2E_BASE_URL="http://127.0.0.1:$E2E_PORT" suite_node e2e node --test --test-concurrency=1 --test-reporter=tap www/e2e/
else
  record e2e 0 1 0; tail -40 "$LOGS/www-build.log"; disk_free
fi

# The shipped size against its budget (scripts/size-budget): a byte count
# is exact, so unlike a timing it can fail the run. pkg/ is the one `make www`
# built above, as shipped.
t0=$SECONDS
if scripts/size.sh --check >"$LOGS/size.log" 2>&1; then record size 1 0 $((SECONDS - t0));
else record size 0 1 $((SECONDS - t0)); disk_free; fi
tail -1 "$LOGS/size.log"

echo
for line in "${SUMMARY[@]}"; do echo "  $line"; done
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" = 0 ]
