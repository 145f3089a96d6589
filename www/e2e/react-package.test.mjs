// The README's React guide, proven: a fresh Vite React app made of the
// README's own code blocks installs pkg/ from the file system (copied, as
// from a registry, not linked), imports `crm-sync` and `crm-sync/react`
// (CrmProvider, useRecords, ...), type-checks and builds. npm uses the
// versions the demo already uses, so its cache answers (--prefer-offline).
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, openPage } from "./support.mjs";

const WWW = join(dirname(fileURLToPath(import.meta.url)), "..");
const ROOT = join(WWW, "..");
const PKG = join(ROOT, "pkg");

/** The demo's installed version of an npm package. */
function version(name) {
  return JSON.parse(readFileSync(join(WWW, "node_modules", name, "package.json"), "utf8")).version;
}

/** The README's React guide: its fenced blocks marked `file=...`. */
function guideFiles() {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const start = readme.indexOf("## Using it from React");
  assert.ok(start >= 0, "the README has its React guide");
  const end = readme.indexOf("\n## ", start + 1);
  const guide = readme.slice(start, end < 0 ? undefined : end);
  const files = {};
  for (const m of guide.matchAll(/```\w+ file=(\S+)\n([\s\S]*?)```/g)) files[m[1]] = m[2];
  return files;
}

function run(cwd, cmd, args) {
  try {
    return execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 240_000 });
  } catch (e) {
    throw new Error(`${cmd} ${args.join(" ")} failed:\n${e.stdout ?? ""}${e.stderr ?? ""}`);
  }
}

test("pkg/ exports crm-sync and crm-sync/react with types, React as a peer", () => {
  const manifest = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
  assert.deepEqual(Object.keys(manifest.exports).slice(0, 2), [".", "./react"]);
  assert.equal(manifest.exports["."].types, "./crm_sync.d.ts");
  assert.equal(manifest.exports["./react"].types, "./react.d.ts");
  assert.ok(manifest.peerDependencies.react, "React is a peer dependency");
  assert.equal(manifest.dependencies?.react, undefined, "React is not bundled in");
  for (const f of ["react.js", "react.d.ts"]) {
    assert.ok(existsSync(join(PKG, f)), `${f} is in pkg/`);
    assert.ok(manifest.files.includes(f), `${f} is published`);
  }
  const types = readFileSync(join(PKG, "react.d.ts"), "utf8");
  for (const hook of ["CrmProvider", "useRecords", "useRecord", "usePending", "useFailed", "useConflicts", "useUndoable", "useCrmStatus", "useSyncState"]) {
    assert.match(types, new RegExp(`export declare function ${hook}\\b`), `${hook} is typed`);
  }
  assert.doesNotMatch(types, /:\s*any\b|<any>|any\[\]/, "no any on the surface");
});

test("a new Vite React app from the README installs pkg/, uses CrmProvider and useRecords, type-checks, builds and runs", async () => {
  const files = guideFiles();
  for (const f of ["vite.config.ts", "src/main.tsx", "src/Customers.tsx", "index.html", "tsconfig.json"]) { // check-links: ignore (files of the app the test makes)
    assert.ok(files[f], `the guide has ${f}`);
  }
  assert.match(files["src/main.tsx"], /<CrmProvider crm=\{crm\}>/);
  assert.match(files["src/Customers.tsx"], /useRecords\("customers"\)/); // check-links: ignore

  const dir = mkdtempSync(join(tmpdir(), "crm-react-app-"));
  try {
    mkdirSync(join(dir, "src"));
    for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify(
        {
          name: "my-crm",
          private: true,
          type: "module",
          dependencies: { react: version("react"), "react-dom": version("react-dom") },
          devDependencies: {
            vite: version("vite"),
            "@vitejs/plugin-react": version("@vitejs/plugin-react"),
            typescript: version("typescript"),
            "@types/react": version("@types/react"),
            "@types/react-dom": version("@types/react-dom"),
          },
        },
        null,
        2,
      ),
    );
    const npm = ["--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"];
    run(dir, "npm", ["install", ...npm]);
    run(dir, "npm", ["install", ...npm, "--install-links", PKG]);
    const installed = join(dir, "node_modules", "crm-sync");
    assert.ok(!lstatSync(installed).isSymbolicLink(), "installed as a copy, as from a registry");
    assert.ok(existsSync(join(installed, "react.js")));

    run(dir, join(dir, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", "."]);
    run(dir, join(dir, "node_modules", ".bin", "vite"), ["build", "--logLevel", "error"]);
    const assets = readdirSync(join(dir, "dist", "assets"));
    assert.ok(assets.some((a) => a.endsWith(".wasm")), `the module's wasm is emitted: ${assets.join(", ")}`);
    const js = assets.filter((a) => a.endsWith(".js")).map((a) => readFileSync(join(dir, "dist", "assets", a), "utf8")).join("\n");
    assert.match(js, /useSyncExternalStore/, "the hooks are bundled");

    // And it works: the reference server serves the built app, which logs
    // in, lists the customers through useRecords and saves through useCrm.
    await runApp(join(dir, "dist"), dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Serves `dist` from a reference server of its own and drives the app. */
async function runApp(dist, dir) {
  const server = spawn(
    join(ROOT, "target", "debug", "crm-sync-server"),
    ["--port", "0", "--db", join(dir, "crm.db"), "--demo", "--static", dist, "--sheet", join(dir, "sheet.csv")],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const browser = await launch();
  try {
    const base = await new Promise((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`the server did not start: ${out}`)), 30_000);
      server.stdout.on("data", (chunk) => {
        out += chunk;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      server.on("exit", (code) => reject(new Error(`the server exited (${code}): ${out}`)));
    });
    const page = await openPage(browser);
    await page.goto(base + "/");
    const items = page.getByRole("listitem");
    await page.getByRole("heading", { name: "Customers" }).waitFor();
    await items.nth(199).waitFor({ timeout: 15000 });
    assert.equal(await items.count(), 200, "every customer, through useRecords");
    const first = items.first();
    const name = (await first.innerText()).replace(/\s*won$/, "");
    await first.getByRole("button", { name: "won" }).click();
    const token = await page.evaluate(async () => {
      const r = await fetch("/api/login", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "bob", password: "demo" }),
      });
      return (await r.json()).token;
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      const r = await fetch(`${base}/api/customers?limit=1000`, { headers: { authorization: `Bearer ${token}` } });
      const { items: records } = await r.json();
      const record = records.find((c) => c.fields.name === name);
      if (record?.fields.status === "customer" && record.updatedBy === "alice") break;
      assert.ok(Date.now() < deadline, `the save of ${name} reached the server`);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(page.problems, []);
  } finally {
    await browser.close();
    server.kill();
  }
}
