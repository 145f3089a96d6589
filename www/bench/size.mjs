// The size table of `make bench`: each peer's default use (an entry file
// under www/bench/size/) bundled from the installed packages with esbuild
// (minified, ES modules, for the browser, NODE_ENV=production), each output
// file gzipped with `gzip -9` as scripts/size.sh does for pkg/, and summed.
//
// Bundles are built with code splitting, so that what a dynamic `import()`
// loads is a chunk of its own. A peer's figure counts its entry chunk, the
// chunks that one imports statically, and only those lazily loaded chunks
// that its default use loads (`lazy`: patterns on the module that starts
// the chunk); every other chunk is listed in the JSON as not counted.
// PowerSync's default use also starts a worker (its database and sync
// engine: a second bundle, built the same way) that loads the wa-sqlite
// build for its default storage (IndexedDB, through the asyncified build);
// both count.
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const MODULES = join(HERE, "node_modules");

export const version = (pkg) => JSON.parse(readFileSync(join(MODULES, pkg, "package.json"), "utf8")).version;
const gzipSize = (data) => execFileSync("gzip", ["-9", "-c"], { input: data, maxBuffer: 1 << 28 }).length;

export const PEERS = [
  {
    name: "Dexie",
    label: (v) => `Dexie ${v("dexie")}`,
    packages: ["dexie"],
    entry: "size/dexie.mjs",
    uses: "a database with one table, put, bulkPut, a where() query",
  },
  {
    name: "Replicache",
    label: (v) => `Replicache ${v("replicache")}`,
    packages: ["replicache"],
    entry: "size/replicache.mjs",
    uses: "a client with a mutator, push and pull URLs, subscribe, mutate",
  },
  {
    name: "RxDB",
    label: (v) => `RxDB ${v("rxdb")}, Dexie storage, replication, leader election`,
    packages: ["rxdb"],
    entry: "size/rxdb.mjs",
    uses: "core + Dexie storage + leader election + replication (HTTP handlers), insert, observed query",
  },
  {
    name: "TanStack DB + offline-transactions",
    label: (v) => `TanStack DB ${v("@tanstack/db")} + offline-transactions ${v("@tanstack/offline-transactions")}`,
    packages: ["@tanstack/db", "@tanstack/offline-transactions"],
    entry: "size/tanstack-db.mjs",
    uses: "an IndexedDB collection, a live query, the offline executor (outbox, leader election)",
  },
  {
    name: "PowerSync web",
    label: (v) => `PowerSync web ${v("@powersync/web")}, JS + wa-sqlite wasm`,
    packages: ["@powersync/web"],
    entry: "size/powersync.mjs",
    uses: "schema, PowerSyncDatabase, connector, connect, execute, watch",
    worker: {
      entry: "node_modules/@powersync/web/lib/worker/worker.js", // what lib/worker/client.js starts (check-links: ignore)
      // The default VFS (IDBBatchAtomicVFS) and the build it needs.
      lazy: [/IDBBatchAtomicVFS\.js$/, /dist\/wa-sqlite-async\.mjs$/],
      assets: ["@journeyapps/wa-sqlite/dist/wa-sqlite-async.wasm"],
    },
  },
];

/**
 * Bundles `entry` and returns the files its default use loads, with raw
 * and gzipped sizes, and the chunks left out.
 */
async function bundle(entry, lazy = []) {
  const result = await build({
    entryPoints: [entry],
    absWorkingDir: HERE,
    bundle: true,
    minify: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    define: { "process.env.NODE_ENV": '"production"' },
    outdir: "size-out", // nothing is written: write: false
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  // Metafile paths are relative to HERE; output files carry absolute ones.
  const contents = new Map(result.outputFiles.map((f) => [f.path, f.contents]));
  const outputs = result.metafile.outputs;
  const start = Object.keys(outputs).find((o) => outputs[o].entryPoint && isEntry(outputs[o].entryPoint, entry));
  if (!start) throw new Error(`size: no output for ${entry}`);
  const counted = new Set();
  const visit = (o) => {
    if (counted.has(o)) return;
    counted.add(o);
    for (const imp of outputs[o].imports) {
      if (imp.external || !outputs[imp.path]) continue;
      if (imp.kind === "import-statement") visit(imp.path);
      else if (imp.kind === "dynamic-import" && lazy.some((re) => re.test(outputs[imp.path].entryPoint ?? ""))) {
        visit(imp.path);
      }
    }
  };
  visit(start);
  const files = [...counted].map((o) => {
    const data = contents.get(join(HERE, o));
    return { file: o.replace(/^size-out\//, ""), raw: data.length, gz: gzipSize(data) };
  });
  const skipped = Object.keys(outputs)
    .filter((o) => !counted.has(o))
    .map((o) => (outputs[o].entryPoint ?? o).replace(/^node_modules\//, ""));
  return { files, skipped };
}

function isEntry(entryPoint, entry) {
  if (entryPoint === entry) return true;
  // A package path ("@powersync/web/lib/worker/worker.js") is reported as
  // node_modules/@powersync/web/lib/worker/worker.js.
  return entryPoint.endsWith(`node_modules/${entry}`);
}

/** Every peer's row: name (with versions), files, raw and gzipped totals. */
export async function peerSizes() {
  const rows = [];
  for (const peer of PEERS) {
    const main = await bundle(peer.entry);
    let files = main.files.map((f) => ({ ...f, part: "main" }));
    let skipped = main.skipped.map((s) => `main: ${s}`);
    if (peer.worker) {
      const w = await bundle(peer.worker.entry, peer.worker.lazy);
      files = files.concat(w.files.map((f) => ({ ...f, part: "worker" })));
      skipped = skipped.concat(w.skipped.map((s) => `worker: ${s}`));
      for (const asset of peer.worker.assets) {
        const data = readFileSync(join(MODULES, asset));
        files.push({ file: asset.split("/").pop(), raw: data.length, gz: gzipSize(data), part: "wasm" });
      }
    }
    const versions = peer.packages.map((p) => `${p} ${version(p)}`).join(", ");
    const sum = (part) => files.filter((f) => !part || f.part === part).reduce((a, f) => a + f.gz, 0);
    rows.push({
      name: peer.name,
      label: peer.label(version),
      versions,
      uses: peer.uses,
      files,
      skipped,
      raw: files.reduce((a, f) => a + f.raw, 0),
      gz: sum(),
      js: files.filter((f) => f.part !== "wasm").reduce((a, f) => a + f.gz, 0),
      wasm: sum("wasm"),
    });
  }
  return rows;
}

// `node www/bench/size.mjs` prints the table alone (no browser, no server).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const r of await peerSizes()) {
    console.log(`${r.name} (${r.versions}): ${(r.gz / 1024).toFixed(1)} KB gz, ${(r.raw / 1024).toFixed(1)} KB raw`);
    for (const f of r.files) console.log(`  ${f.part} ${f.file}: ${(f.gz / 1024).toFixed(1)} KB gz`);
    if (r.skipped.length) console.log(`  not counted: ${r.skipped.join(", ")}`);
  }
}
