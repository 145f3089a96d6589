# crm-sync: the two commands of the README are `make demo` and `make test`.
# Both install what is missing first (scripts/setup.sh), idempotently.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
export CHROMEDRIVER := /usr/bin/chromedriver
export CHROME_BIN := /usr/bin/chromium

WASM_OPT := tools/node_modules/.bin/wasm-opt
TERSER := tools/node_modules/.bin/terser
# The features current rustc emits for wasm32; binaryen needs them named
# once the name section is gone.
WASM_OPT_FEATURES := --enable-bulk-memory --enable-bulk-memory-opt \
  --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
  --enable-reference-types --enable-multivalue
DEMO_PORT ?= 8080

.PHONY: demo test bench size setup pkg www-deps www server docs clean

setup:
	@scripts/setup.sh tools

# The npm package: pkg/crm_sync.js, pkg/crm_sync_bg.wasm, pkg/crm_sync.d.ts,
# and crm-sync/react (pkg/react.js, pkg/react.d.ts).
pkg: setup
	@wasm-pack --quiet build --target web --release --mode no-install --out-dir pkg --out-name crm_sync
	@# --low-memory-unused: Rust's wasm data starts past the 1 MB stack, so the
	@# first 1 KB is never addressed and offsets may fold into constants
	@# (-1.4 KB gzipped); the producers section names only the compilers.
	@# -Os, not -Oz: the smaller raw module (-Oz) gzips 391 bytes larger
	@# (docs/performance.md, "the case tables and the optimiser").
	@$(WASM_OPT) -Os --low-memory-unused --strip-producers $(WASM_OPT_FEATURES) pkg/crm_sync_bg.wasm -o pkg/crm_sync_bg.wasm
	@# The raw wasm exports (InitOutput) are typed `any` by wasm-bindgen; the
	@# surface promises no `any`, and `unknown` is as true for them.
	@sed -i '/^export interface InitOutput/,/^}/ s/\bany\b/unknown/g' pkg/crm_sync.d.ts
	@# An optional parameter with a type of our own loses its `?` in
	@# wasm-bindgen's output: `crm.logout()` takes its options or nothing.
	@sed -i 's/logout(options: {/logout(options?: {/' pkg/crm_sync.d.ts
	@# crm-sync/react: the hooks, an `exports` map and React as a peer dependency.
	@node www/react/add-to-pkg.mjs pkg
	@# The JS glue minified (terser: comments, whitespace, local names; the
	@# exports keep their names): the doc comments wasm-bindgen copies into
	@# it are in crm_sync.d.ts, where editors read them (-9.0 KB gzipped).
	@for f in pkg/crm_sync.js pkg/react.js; do \
	  $(TERSER) "$$f" --module --compress --mangle -o "$$f.min" && mv "$$f.min" "$$f" || exit 1; done
	@echo "pkg: built ($$(scripts/size.sh | tail -1))"

www-deps: pkg
	@scripts/setup.sh www

www: www-deps
	@cd www && npm run --silent build

server: setup
	@cargo build --quiet -p crm-sync-server

demo: www server
	@mkdir -p data
	@echo
	@echo "  crm-sync demo: http://127.0.0.1:$(DEMO_PORT)"
	@echo "  log in as alice, bob or user01 .. user50, password: demo"
	@echo "  (Ctrl-C stops it; data in data/demo.db, sheet in data/sheet.csv)"
	@echo
	@target/debug/crm-sync-server --port $(DEMO_PORT) --db data/demo.db --demo \
	  --static www/dist --sheet data/sheet.csv --sheet-latency-ms 3000

test: setup
	@scripts/test.sh

# The documentation site: docs/ (VitePress) with the API reference generated
# by TypeDoc from pkg/crm_sync.d.ts and www/react/react.d.ts. Offline; output in
# docs/.vitepress/dist/ (see docs/toolchain.md).
docs: pkg
	@scripts/setup.sh docs
	@cd docs && node_modules/.bin/typedoc
	@cd docs && node_modules/.bin/vitepress build . --logLevel warn
	@echo "docs: built in docs/.vitepress/dist/ (npm --prefix docs run preview serves it)"

bench: pkg server
	@scripts/bench.sh

size: pkg
	@scripts/size.sh --table

clean:
	cargo clean
	rm -rf pkg www/dist www/node_modules tools/node_modules docs/node_modules docs/public/api docs/.vitepress/dist docs/.vitepress/cache
