// Adds crm-sync/react to the package wasm-pack wrote into pkg/ (run by
// `make pkg`): copies react.js and react.d.ts, and gives package.json the
// `exports` map ("." and "./react", each with its types) and React as a
// peer dependency. Idempotent.
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const pkg = process.argv[2] ?? join(here, "..", "..", "pkg");

for (const file of ["react.js", "react.d.ts"]) copyFileSync(join(here, file), join(pkg, file));

const path = join(pkg, "package.json");
const manifest = JSON.parse(readFileSync(path, "utf8"));
manifest.files = [...new Set([...(manifest.files ?? []), "react.js", "react.d.ts"])];
manifest.exports = {
  ".": { types: "./crm_sync.d.ts", default: "./crm_sync.js" },
  "./react": { types: "./react.d.ts", default: "./react.js" },
  // For bundlers or servers that want the module's file itself.
  "./crm_sync_bg.wasm": "./crm_sync_bg.wasm",
  "./package.json": "./package.json",
};
manifest.peerDependencies = { ...(manifest.peerDependencies ?? {}), react: ">=18" };
// Only the React entry needs React; the client works without it.
manifest.peerDependenciesMeta = { ...(manifest.peerDependenciesMeta ?? {}), react: { optional: true } };
writeFileSync(path, JSON.stringify(manifest, null, 2) + "\n");
