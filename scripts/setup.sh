#!/usr/bin/env bash
# Installs what crm-sync's build and tests need, idempotently and quietly when
# everything is there. Only package registries are used (crates.io, npm,
# Debian, PyPI): see docs/toolchain.md for why each step is done this way.
#
#   scripts/setup.sh tools   Rust target, wasm-pack, wasm-bindgen-cli, Chromium,
#                            wasm-opt (npm binaryen), and what `fuzz` and
#                            `browsers` install
#   scripts/setup.sh browsers  Firefox ESR and geckodriver, WebKitGTK's
#                            WebKitWebDriver and Xvfb (the other two engines
#                            of the browser suite and the demo smoke)
#   scripts/setup.sh fuzz    Schemathesis (server/requirements-fuzz.txt) in a
#                            Python virtual environment, target/fuzz-venv
#   scripts/setup.sh www     the demo's npm packages (needs pkg/ built first)
#   scripts/setup.sh docs    the documentation site's npm packages (VitePress, TypeDoc)
#   scripts/setup.sh postgres  Debian's PostgreSQL server (the server-pg test
#                            suite starts a throwaway cluster of it)
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_PACK_VERSION=0.15.1
say() { echo "setup: $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

tools() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi

  if [ "$(wasm-pack --version 2>/dev/null)" != "wasm-pack $WASM_PACK_VERSION" ]; then
    say "installing wasm-pack $WASM_PACK_VERSION (a few minutes, from source)"
    cargo install wasm-pack --version "$WASM_PACK_VERSION" --force
  fi

  # wasm-bindgen-cli must match the wasm-bindgen crate exactly, or wasm-pack
  # tries to download one (which fails here). Not --locked: a locked
  # dependency of it is missing from the registry.
  local want
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  if [ -z "$want" ]; then say "no wasm-bindgen in Cargo.lock"; return 1; fi
  if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $want" ] ||
     ! command -v wasm-bindgen-test-runner >/dev/null; then
    say "installing wasm-bindgen-cli $want (a few minutes, from source)"
    cargo install wasm-bindgen-cli --version "$want" --force
  fi

  if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    say "installing Debian's chromium and chromium-driver"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi

  npm_ci tools
  fuzz
  browsers
  postgres
}

# Firefox and WebKit for the browser suite and the demo's smoke test
# (docs/guide/browsers.md): Debian's firefox-esr, geckodriver from crates.io
# (Debian has no package of it), and WebKitGTK's WebDriver, whose browser
# (MiniBrowser) needs a display, hence Xvfb.
GECKODRIVER_VERSION=0.37.1
browsers() {
  export PATH="$HOME/.cargo/bin:$PATH"
  local want=()
  command -v firefox-esr >/dev/null || want+=(firefox-esr)
  [ -x /usr/bin/WebKitWebDriver ] || want+=(webkit2gtk-driver)
  command -v xvfb-run >/dev/null || want+=(xvfb)
  if [ ${#want[@]} -gt 0 ]; then
    say "installing Debian's ${want[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null
  fi
  if [ "$(geckodriver --version 2>/dev/null | head -1 | awk '{print $2}')" != "$GECKODRIVER_VERSION" ]; then
    say "installing geckodriver $GECKODRIVER_VERSION (about two minutes, from source)"
    cargo install geckodriver --version "$GECKODRIVER_VERSION" --locked --force
  fi
}

# PostgreSQL for the server suite's second run (scripts/test.sh server-pg):
# only the binaries; the suite makes and removes its own cluster.
postgres() {
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    say "installing Debian's postgresql"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
}

# The Python tools of the server's fuzz suite, pinned in
# server/requirements-fuzz.txt, in a virtual environment of their own
# (target/fuzz-venv). Reinstalled when the requirements file is newer than the
# last install, or when the venv is missing or broken.
FUZZ_VENV=target/fuzz-venv
fuzz() {
  local stamp=$FUZZ_VENV/.installed
  if [ -f "$stamp" ] && [ ! server/requirements-fuzz.txt -nt "$stamp" ] &&
     "$FUZZ_VENV/bin/schemathesis" --version >/dev/null 2>&1; then
    return 0
  fi
  say "installing server/requirements-fuzz.txt (Schemathesis) into $FUZZ_VENV"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$FUZZ_VENV"
  python3 -m venv "$FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install --quiet --disable-pip-version-check -r server/requirements-fuzz.txt
  touch "$stamp"
}

# npm ci when node_modules is missing or older than the lock file.
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "installing npm packages of $dir/"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

www() {
  if [ ! -f pkg/package.json ]; then say "pkg/ is not built yet (make pkg)"; return 1; fi
  npm_ci www
}

docs() {
  npm_ci docs
}

case "${1:-tools}" in
  tools) tools ;;
  fuzz) fuzz ;;
  browsers) browsers ;;
  www) www ;;
  docs) docs ;;
  postgres) postgres ;;
  *) echo "usage: $0 [tools|fuzz|browsers|postgres|www|docs]" >&2; exit 2 ;;
esac
