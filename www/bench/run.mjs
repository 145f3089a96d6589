// The node half of `make bench` (scripts/bench.sh starts the server and
// calls this): seeds the server, drives headless Chromium through
// bench.mjs, runs the PATCH load generator, measures the shipped size, and
// prints one table. Every figure is the median of BENCH_ROUNDS rounds, with
// the spread (min-max) beside it; a row's baseline is measured in the same
// run. It reports; it never fails on a goal.
//
// Environment: BENCH_BASE_URL (the server, serving the bench page at /),
// BENCH_SHEET (the server's --sheet file), BENCH_PKG (pkg/ to weigh),
// BENCH_NAMED_WASM (an optimised wasm that kept its name section, optional),
// BENCH_ROUNDS (5), BENCH_JSON (where to write the raw results, optional).
import { readFileSync, writeFileSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { cpus, tmpdir } from "node:os";
import { launch } from "../e2e/support.mjs";
import { peerSizes, version as peerVersion } from "./size.mjs";
import { largestFunctions } from "../../scripts/wasm-functions.mjs";

const BASE = process.env.BENCH_BASE_URL ?? "http://127.0.0.1:8080";
const API = `${BASE}/api`;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/**
 * `BENCH_ONLY=put,batch`: run only these rows (names as in `bench.mjs` and
 * `peers.mjs`, plus `server`; `peers` stands for every peer row).
 */
const PEER_ROWS = ["dexiePut", "dexieGet", "dexieBulkPut", "kvSet", "kvGet", "electWeb", "electBroadcast"];
/** The rows run once the server holds LARGE customers (3 rounds each: they are slow). */
const LARGE_ROWS = ["loadLarge", "reopenLarge", "reopenLargeOffline", "query", "dexieLoad", "dexieQuery"];
const ONLY = process.env.BENCH_ONLY
  ? new Set(process.env.BENCH_ONLY.split(",").flatMap((n) => (n === "peers" ? PEER_ROWS : [n])))
  : null;
const wanted = (name) => !ONLY || ONLY.has(name);
const CUSTOMERS = 10000;
/** Customers of the large rows (`BENCH_LARGE` for a quicker try). */
const LARGE = Number(process.env.BENCH_LARGE ?? 100000);
const LARGE_ROUNDS = Math.min(ROUNDS, 3);
const USER = "alice";

const log = (...a) => console.error("bench:", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ----- the server ----------------------------------------------------------

async function api(method, path, { token, body, headers = {} } = {}) {
  const res = await fetch(`${API}${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

async function login(username) {
  const r = await api("POST", "/login", { body: { username, password: "demo" } });
  if (r.status !== 200) throw new Error(`login ${username}: HTTP ${r.status}`);
  return r.body.token;
}

/**
 * Brings the server to exactly CUSTOMERS customers: the rows the demo
 * data lacks are written to the sheet and imported by one `from-sheet` sync
 * job (the server's own bulk path, 200 rows per transaction), which is far
 * quicker than thousands of POSTs on a 2-core machine.
 */
async function countCustomers(token) {
  let count = 0;
  let after = null;
  do {
    const page = (await api("GET", `/customers?limit=10000${after ? `&after=${encodeURIComponent(after)}` : ""}`, { token })).body;
    count += page.items.length;
    after = page.next;
  } while (after);
  return count;
}

async function seedCustomers(token, target = CUSTOMERS) {
  const have = await countCustomers(token);
  if (have >= target) return have;
  const sheet = process.env.BENCH_SHEET;
  if (!sheet) throw new Error("BENCH_SHEET is not set");
  const statuses = ["lead", "prospect", "customer", "churned"];
  let csv = "id,version,name,email,phone,status,owner,city\n";
  // Numbered on from the count, so a second seeding adds new ids.
  for (let n = have + 1; n <= target; n++) {
    const id = `bench-${String(n).padStart(6, "0")}`;
    csv += `${id},,Bench Customer ${n},c${n}@bench.example,+1-555-${n},${statuses[n % 4]},alice,Bench City\n`;
  }
  writeFileSync(sheet, csv);
  const started = await api("POST", "/sync", {
    token,
    body: { kind: "from-sheet" },
    headers: { "idempotency-key": crypto.randomUUID() },
  });
  if (started.status !== 202) throw new Error(`sync: HTTP ${started.status}`);
  const deadline = Date.now() + 1_200_000;
  for (;;) {
    const s = (await api("GET", `/sync/${started.body.syncId}`, { token })).body;
    if (["complete", "error", "cancelled"].includes(s.status)) {
      if (s.status !== "complete") throw new Error(`seeding sync: ${s.status} ${s.message ?? ""}`);
      break;
    }
    if (Date.now() > deadline) throw new Error("seeding sync did not finish in 20 min");
    await sleep(200);
  }
  return countCustomers(token);
}

async function ensureRecord(token, collection, id, fields) {
  const r = await api("GET", `/${collection}/${id}`, { token });
  if (r.status === 200) return;
  const c = await api("POST", `/${collection}`, {
    token,
    body: { id, fields },
    headers: { "idempotency-key": crypto.randomUUID() },
  });
  if (c.status !== 201) throw new Error(`create ${collection}/${id}: HTTP ${c.status}`);
}

/**
 * Requests per second from `clients` concurrent loops for `ms`, each on its
 * own customer: PATCH with If-Match (re-reading the version on a 409) and an
 * Idempotency-Key, or a plain GET of the same record. Bounded in time and in
 * count (MAX_REQUESTS per phase), loopback only.
 */
async function loadPhase(token, method, clients, ms) {
  const MAX_REQUESTS = 20000;
  let sent = 0;
  let ok = 0;
  let conflicts = 0;
  let errors = 0;
  const end = Date.now() + ms;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async (_, c) => {
      const id = `c-${String(c + 1).padStart(4, "0")}`;
      let version = (await api("GET", `/customers/${id}`, { token })).body.version;
      while (Date.now() < end && sent < MAX_REQUESTS) {
        sent++;
        if (method === "GET") {
          const r = await api("GET", `/customers/${id}`, { token });
          if (r.status === 200) ok++;
          else errors++;
          continue;
        }
        const r = await api("PATCH", `/customers/${id}`, {
          token,
          body: { fields: { city: `City ${sent}` } },
          headers: { "if-match": `"${version}"`, "idempotency-key": crypto.randomUUID() },
        });
        if (r.status === 200) {
          ok++;
          version = r.body.version;
        } else if (r.status === 409) {
          conflicts++;
          version = (await api("GET", `/customers/${id}`, { token })).body.version;
        } else errors++;
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  if (errors) log(`${method}: ${errors} errors`);
  return { rps: ok / seconds, conflicts, errors };
}

// ----- size ----------------------------------------------------------------

function shippedSize(pkg) {
  const files = readdirSync(pkg)
    .filter((f) => f.endsWith(".wasm") || f.endsWith(".js"))
    .sort()
    .map((f) => {
      const data = readFileSync(join(pkg, f));
      // gzip -9, as scripts/size.sh (and a CDN) does it.
      const gz = execFileSync("gzip", ["-9", "-c", join(pkg, f)], { maxBuffer: 1 << 26 }).length;
      return { file: f, raw: data.length, gz };
    });
  return files;
}

// ----- the table -----------------------------------------------------------

const fmtMs = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + " ms";
const fmtKb = (b) => `${(b / 1024).toFixed(1)} KB`;

/** `median (min-max)` of a list of numbers, in the unit `fmt` gives. */
function spread(xs, fmt) {
  if (!xs.length) return "n/a";
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const m = median(xs);
  const pct = m ? Math.round(((hi - lo) / m) * 100) : 0;
  return `${fmt(m)} ±${pct}%`;
}

function printTable(head, rows, cols = ["benchmark", "crm-sync", "baseline", "ratio", "goal"]) {
  const cells = rows.map((r) => [r.name, r.crm, r.base, r.ratio, r.goal].slice(0, cols.length));
  const width = cols.map((c, k) => Math.max(c.length, ...cells.map((r) => String(r[k] ?? "").length)));
  const line = (r) => r.map((c, k) => String(c ?? "").padEnd(width[k])).join("  ").trimEnd();
  console.log(head.join("\n"));
  console.log(line(cols));
  console.log(line(width.map((w) => "-".repeat(w))));
  for (const r of cells) console.log(line(r));
}

// ----- main ----------------------------------------------------------------

async function main() {
  const t0 = Date.now();
  const token = await login(USER);
  const customers = ["load", "memory", "reopen", "reopenOffline", "bytes"].some(wanted) ? await seedCustomers(token) : 0;
  log(`${customers} customers on the server (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  await ensureRecord(token, "benchdeb", "r1", { n: 0 });
  await ensureRecord(token, "benchdeb", "r2", { n: 0 });

  const browser = await launch();
  const chromium = browser.version();
  const page = await (await browser.newContext()).newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`${BASE}/index.html`);
  await page.waitForFunction(() => window.bench !== undefined, null, { timeout: 30000 });
  await page.evaluate((s) => window.bench.configure(s), { baseUrl: "/api", token, user: USER });

  const results = {};
  const call = (name, side, round) =>
    Promise.race([
      page.evaluate(([n, s, r]) => window.bench.run(n, s, r), [name, side, round]),
      sleep(LARGE_ROWS.includes(name) ? 600000 : 60000).then(() => {
        throw new Error(`${name}/${side} took over ${LARGE_ROWS.includes(name) ? 600 : 60} s`);
      }),
    ]);
  // A warm-up round (not counted) first, where it is cheap: the first
  // IndexedDB database, lock or channel of a page costs more than the rest.
  const measure = async (name, rounds = ROUNDS, warmUp = false) => {
    const out = { crm: [], base: [], errors: [] };
    results[name] = out;
    if (!wanted(name)) return out;
    if (warmUp) for (const side of ["crm", "base"]) await call(name, side, -1).catch(() => {});
    for (let r = 0; r < rounds; r++) {
      for (const side of r % 2 ? ["base", "crm"] : ["crm", "base"]) {
        try {
          out[side].push(await call(name, side, r));
        } catch (e) {
          out.errors.push(`${side}: ${e.message.split("\n")[0]}`);
        }
      }
    }
    if (out.errors.length) log(`${name}: ${out.errors.join("; ")}`);
    results[name] = out;
    log(`${name} done (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    return out;
  };
  /**
   * One more round of each side of a load row under a Chrome trace: the
   * longest main-thread task by the thread's own CPU time. On a shared
   * machine the wall time of a task (what PerformanceObserver and the
   * heartbeat see) includes the time the OS gave the CPU to others; the
   * CPU time is the task's own work.
   */
  const traced = async (name) => {
    const out = {};
    if (!wanted(name)) return out;
    for (const side of ["crm", "base"]) {
      const path = join(tmpdir(), `crm-bench-trace-${process.pid}-${name}-${side}.json`);
      await browser.startTracing(page, { path, categories: ["toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline"] });
      try {
        await call(name, side, 99);
      } catch (e) {
        log(`${name}/${side} traced: ${e.message.split("\n")[0]}`);
      } finally {
        await browser.stopTracing();
      }
      try {
        const events = JSON.parse(readFileSync(path, "utf8")).traceEvents ?? [];
        const byThread = new Map();
        for (const e of events) {
          if (e.name !== "RunTask" || e.ph !== "X" || typeof e.tdur !== "number") continue;
          const k = `${e.pid}/${e.tid}`;
          const t = byThread.get(k) ?? { cpu: 0, tasks: [] };
          t.cpu += e.tdur;
          t.tasks.push(e);
          byThread.set(k, t);
        }
        // The page's main thread: the one that worked most.
        const main = [...byThread.values()].sort((a, b) => b.cpu - a.cpu)[0];
        if (main) {
          // A loop, not Math.max(...): a large load has more tasks than
          // a call may have arguments.
          let cpu = 0;
          let wall = 0;
          let over50 = 0;
          for (const e of main.tasks) {
            cpu = Math.max(cpu, e.tdur);
            wall = Math.max(wall, e.dur);
            if (e.tdur > 50000) over50++;
          }
          out[side] = { cpu: cpu / 1000, wall: wall / 1000, over50 };
        }
      } catch (e) {
        log(`${name}/${side} trace: ${e.message}`);
      } finally {
        rmSync(path, { force: true });
      }
    }
    return out;
  };
  /**
   * `BENCH_PROFILE=reopenLarge,...`: after each row named, one more
   * crm-sync round under Chrome's sampling profiler (CDP `Profiler`). Logs
   * the functions with the most self time over the round and within its
   * longest busy stretch (consecutive samples with no idle one: about the
   * longest task). With BENCH_PROFILE, bench.sh serves the wasm that kept
   * its names.
   */
  const PROFILE = new Set((process.env.BENCH_PROFILE ?? "").split(",").filter(Boolean));
  const profiled = async (name) => {
    if (!PROFILE.has(name) || !wanted(name)) return;
    const cdp = await page.context().newCDPSession(page);
    await cdp.send("Profiler.enable");
    await cdp.send("Profiler.setSamplingInterval", { interval: 250 });
    await cdp.send("Profiler.start");
    try {
      await call(name, "crm", 98);
    } catch (e) {
      log(`${name} profiled: ${e.message.split("\n")[0]}`);
    }
    const { profile } = await cdp.send("Profiler.stop");
    await cdp.detach();
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const label = (id) => {
      const f = byId.get(id).callFrame;
      return `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber}`;
    };
    const idle = (id) => ["(idle)", "(program)"].includes(byId.get(id).callFrame.functionName);
    const top = (from, to) => {
      const self = new Map();
      for (let i = from; i < to; i++) {
        const k = label(profile.samples[i]);
        self.set(k, (self.get(k) ?? 0) + profile.timeDeltas[i + 1 < profile.timeDeltas.length ? i + 1 : i] / 1000);
      }
      return [...self].sort((a, b) => b[1] - a[1]).slice(0, 25).map(([k, ms]) => `  ${ms.toFixed(1).padStart(8)} ms  ${k}`).join("\n");
    };
    let best = [0, 0, 0];
    let start = null;
    let ms = 0;
    for (let i = 0; i < profile.samples.length; i++) {
      if (idle(profile.samples[i])) {
        if (start !== null && ms > best[2]) best = [start, i, ms];
        start = null;
        ms = 0;
      } else {
        if (start === null) start = i;
        ms += (profile.timeDeltas[i + 1] ?? 0) / 1000;
      }
    }
    log(`${name} profile, self time over the round:\n${top(0, profile.samples.length)}`);
    log(`${name} profile, longest busy stretch ${best[2].toFixed(1)} ms:\n${top(best[0], best[1])}`);
  };
  /**
   * The memory row: each side in a fresh browser context (a fresh module,
   * whose wasm memory never shrinks, and an empty IndexedDB), weighed after
   * a forced garbage collection before `hold` and after it: the JS heap
   * (CDP Runtime.getHeapUsage) plus the module's wasm memory.
   */
  const weighMemory = async (name) => {
    const out = {};
    if (!wanted(name)) return out;
    for (const side of ["crm", "base"]) {
      const context = await browser.newContext();
      try {
        const p = await context.newPage();
        p.on("pageerror", (e) => problems.push(e.message));
        await p.goto(`${BASE}/index.html`);
        await p.waitForFunction(() => window.bench !== undefined, null, { timeout: 30000 });
        await p.evaluate((s) => window.bench.configure(s), { baseUrl: "/api", token, user: USER });
        const cdp = await context.newCDPSession(p);
        const weigh = async () => {
          await cdp.send("HeapProfiler.collectGarbage");
          await cdp.send("HeapProfiler.collectGarbage");
          const { usedSize } = await cdp.send("Runtime.getHeapUsage");
          return { heap: usedSize, wasm: await p.evaluate(() => window.bench.wasmBytes()) };
        };
        const before = await weigh();
        const count = await Promise.race([
          p.evaluate((s) => window.bench.hold(s), side),
          sleep(600000).then(() => {
            throw new Error(`${name}/${side} took over 600 s`);
          }),
        ]);
        const after = await weigh();
        out[side] = { count, heap: after.heap - before.heap, wasm: side === "crm" ? after.wasm - before.wasm : 0 };
      } catch (e) {
        log(`${name}/${side}: ${e.message.split("\n")[0]}`);
      } finally {
        await context.close();
      }
    }
    results[name] = out;
    log(`${name} done (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
    return out;
  };
  for (const name of ["put", "batch", "get", "lockWeb", "handoffWeb"]) await measure(name, ROUNDS, true);
  for (const name of ["load", "lockBroadcast", "lockBroadcastPair", "handoffBroadcast"]) await measure(name);
  results.loadTraced = await traced("load");
  await weighMemory("memory");
  // The second visit, with what the last load stored (or, when the load
  // row did not run, what a first load not timed stores).
  const prime = async (load, rows) => {
    if (wanted(load) || !rows.some(wanted)) return;
    const { count } = await page.evaluate(() => window.bench.run("prime", "crm", 0));
    log(`${count} customers stored for ${rows.join(", ")} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  };
  await prime("load", ["reopen", "reopenOffline"]);
  for (const name of ["reopen", "reopenOffline"]) {
    await measure(name);
    await profiled(name);
  }
  await measure("bytes", 1);
  // The cross-tab record path: one try tells whether it exists at all.
  const probe = await measure("recordEvent", 1);
  if (probe.crm[0] && ROUNDS > 1) await measure("recordEvent");
  await measure("saves", 1);
  // The peer rows (peers.mjs): crm-sync and the peer alternate as above.
  for (const name of PEER_ROWS.filter((n) => n !== "electBroadcast")) await measure(name, ROUNDS, true);
  await measure("electBroadcast");
  // The large rows, once the server holds LARGE customers.
  let large = 0;
  if ([...LARGE_ROWS, "memoryLarge"].some(wanted)) {
    large = await seedCustomers(token, LARGE);
    log(`${large} customers on the server (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  for (const name of LARGE_ROWS) {
    if (name === "reopenLarge") await prime("loadLarge", ["reopenLarge", "reopenLargeOffline"]);
    await measure(name, LARGE_ROUNDS);
    await profiled(name);
  }
  results.loadLargeTraced = await traced("loadLarge");
  await weighMemory("memoryLarge");
  await browser.close();
  if (problems.length) log(`page errors: ${problems.join("; ")}`);

  // The server line, with the browser gone so that it does not compete.
  const clients = 32;
  const server = { PATCH: [], GET: [], conflicts: 0 };
  for (let r = 0; r < (wanted("server") ? 3 : 0); r++) {
    const p = await loadPhase(token, "PATCH", clients, 2000);
    server.PATCH.push(p.rps);
    server.conflicts += p.conflicts;
    server.GET.push((await loadPhase(token, "GET", clients, 2000)).rps);
  }
  results.server = server;
  log(`server done (${((Date.now() - t0) / 1000).toFixed(0)} s)`);

  const size = shippedSize(process.env.BENCH_PKG ?? "pkg");
  const peerSize = await peerSizes();
  results.peerSizes = peerSize;
  const named = process.env.BENCH_NAMED_WASM ? largestFunctions(process.env.BENCH_NAMED_WASM, 8) : null;
  results.size = { files: size, named };

  // ----- rows ---------------------------------------------------------------
  const rows = [];
  const pick = (xs, f) => xs.map(f).filter((v) => typeof v === "number");
  const timeRow = (name, key, goal, f = (v) => v) => {
    const r = results[key];
    const crm = pick(r.crm, f);
    const base = pick(r.base, f);
    const ratio = crm.length && base.length ? median(crm) / median(base) : null;
    const limit = goal?.max;
    rows.push({
      name,
      crm: spread(crm, fmtMs),
      base: spread(base, fmtMs),
      ratio: ratio === null ? "n/a" : `${ratio.toFixed(2)}×`,
      goal: goal ? `${goal.text}${ratio === null ? "" : ratio <= limit ? " ok" : " MISSED"}` : "",
    });
  };
  timeRow("LocalStore.put, versioned, per put", "put", { text: "≤1.25× (rate ≥0.8×)", max: 1.25 });
  timeRow("1,000 records in one transaction (putMany)", "batch", { text: "≤1.25× (rate ≥0.8×)", max: 1.25 });
  timeRow("LocalStore.get, per get", "get");
  const longestRows = (key, what) => {
    const r = results[key];
    const t = results[`${key}Traced`] ?? {};
    const cpuOf = (v) => (v ? `${fmtMs(v.cpu)} (${v.over50} over 50 ms; wall ${fmtMs(v.wall)})` : "n/a");
    rows.push({
      name: `  longest task by CPU time (Chrome trace, one round), ${what}`,
      crm: cpuOf(t.crm),
      base: cpuOf(t.base),
      ratio: t.crm && t.base ? `${(t.crm.cpu / t.base.cpu).toFixed(2)}×` : "n/a",
      goal: t.crm ? `≤50 ms${t.crm.cpu <= 50 ? " ok" : " MISSED"}` : "≤50 ms",
    });
    const worst = (xs) => (xs.length ? Math.max(...xs) : null);
    const goal = (xs) => (worst(xs) === null ? "≤50 ms" : `≤50 ms${worst(xs) <= 50 ? " ok" : " MISSED"}`);
    for (const [label, f] of [
      ["longest task (PerformanceObserver longtask, 0: none ≥50 ms)", (v) => v.longtask],
      ["longest gap of a 4 ms heartbeat", (v) => v.longest],
    ]) {
      const crm = pick(r.crm, f);
      const base = pick(r.base, f);
      rows.push({
        name: `  ${label}, ${what}`,
        crm: spread(crm, fmtMs),
        base: spread(base, fmtMs),
        ratio: crm.length && base.length && median(base) ? `${(median(crm) / median(base)).toFixed(2)}×` : "n/a",
        goal: goal(crm),
      });
    }
  };
  const loaded = results.load.crm.map((v) => v.count);
  timeRow(`load ${loaded[0] ?? customers} customers from the server, pages of 1000`, "load", { text: "≤1.3×", max: 1.3 }, (v) => v.ms);
  longestRows("load", "open + that load");
  const loadedLarge = results.loadLarge.crm.map((v) => v.count);
  timeRow(`load ${loadedLarge[0] ?? large} customers from the server, pages of 1000`, "loadLarge", { text: "≤1.3×", max: 1.3 }, (v) => v.ms);
  longestRows("loadLarge", "open + that load");
  // Memory: growth from before `open` (crm-sync) or the first fetch (plain
  // JS) to after the load, each after a forced garbage collection.
  for (const key of ["memory", "memoryLarge"]) {
    const r = results[key] ?? {};
    const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
    const total = (v) => v.heap + v.wasm;
    const ratio = r.crm && r.base ? total(r.crm) / total(r.base) : null;
    rows.push({
      name: `memory holding ${r.crm?.count ?? r.base?.count ?? "the"} customers (JS heap + wasm memory; baseline: a Map of the parsed pages)`,
      crm: r.crm ? `${mb(total(r.crm))} (heap ${mb(r.crm.heap)} + wasm ${mb(r.crm.wasm)})` : "n/a",
      base: r.base ? mb(total(r.base)) : "n/a",
      ratio: ratio === null ? "n/a" : `${ratio.toFixed(2)}×`,
      goal: `≤1.5×${ratio === null ? "" : ratio <= 1.5 ? " ok" : " MISSED"}`,
    });
  }
  // A second visit: records on screen from IndexedDB, against a raw getAll.
  const reopenRows = (key, count, how) => {
    timeRow(`reopen ${how}: ${count} customers on screen (baseline: raw IndexedDB getAll)`, key, { text: "≤1.5×", max: 1.5 }, (v) => v.ms);
    const caught = pick(results[key].crm, (v) => v.caughtUp);
    if (caught.length) rows.push({ name: "  until the catch-up from the kept cursor is done", crm: spread(caught, fmtMs), base: "", ratio: "", goal: "" });
    const tasks = pick(results[key].crm, (v) => v.longtask);
    rows.push({
      name: "  longest task (PerformanceObserver longtask, 0: none ≥50 ms)",
      crm: spread(tasks, fmtMs),
      base: spread(pick(results[key].base, (v) => v.longtask), fmtMs),
      ratio: "",
      goal: tasks.length ? `≤50 ms${Math.max(...tasks) <= 50 ? " ok" : " MISSED"}` : "≤50 ms",
    });
  };
  reopenRows("reopen", results.reopen.crm[0]?.count ?? customers, "online");
  reopenRows("reopenOffline", results.reopenOffline.crm[0]?.count ?? customers, "offline");
  reopenRows("reopenLarge", results.reopenLarge.crm[0]?.count ?? large, "online");
  reopenRows("reopenLargeOffline", results.reopenLargeOffline.crm[0]?.count ?? large, "offline");
  {
    const b = results.bytes.crm[0];
    const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
    if (b) {
      rows.push({ name: `bytes over the network: first load of ${b.records} customers`, crm: kb(b.first), base: "", ratio: "", goal: "" });
      for (const [label, n] of [["reopen, nothing changed", b.unchanged], ["reopen, 100 changed", b.changed]]) {
        const share = n / b.first;
        rows.push({
          name: `  ${label} (baseline: the first load)`,
          crm: kb(n),
          base: kb(b.first),
          ratio: `${(share * 100).toFixed(2)}%`,
          goal: label.includes("nothing") ? `<1%${share < 0.01 ? " ok" : " MISSED"}` : "",
        });
      }
    }
  }
  const queried = results.query.crm.map((v) => v.records);
  timeRow(`query over ${queried[0] ?? large} records: where + search + orderBy + limit 50, first run`, "query", null, (v) => v.cold);
  {
    const r = results.query;
    const cold = pick(r.crm, (v) => v.cold);
    const warm = pick(r.crm, (v) => v.warm);
    const ratio = cold.length && warm.length ? median(warm) / median(cold) : null;
    rows.push({
      name: "query after one record changed (baseline: same filter+sort again)",
      crm: spread(warm, fmtMs),
      base: spread(pick(r.base, (v) => v.warm), fmtMs),
      ratio: ratio === null ? "n/a" : `${ratio.toFixed(3)}× of cold`,
      goal: ratio === null ? "≤0.1× of cold" : `≤0.1× of cold${ratio <= 0.1 ? " ok" : " MISSED"}`,
    });
  }
  timeRow("lock acquire+release, Web Locks path", "lockWeb");
  {
    // An absolute goal: the baseline (raw Web Locks) only shows the gap.
    const absoluteRow = (name, key, limit) => {
      const r = results[key];
      const ms = median(r.crm);
      rows.push({
        name,
        crm: spread(r.crm, fmtMs),
        base: spread(r.base, fmtMs),
        ratio: r.crm.length && r.base.length ? `${(ms / median(r.base)).toFixed(2)}×` : "n/a",
        goal: limit ? `<${limit} ms${r.crm.length ? (ms < limit ? " ok" : " MISSED") : ""}` : "",
      });
    };
    absoluteRow("lock acquire+release, BroadcastChannel path, tab alone", "lockBroadcast", 5);
    absoluteRow("lock acquire+release, BroadcastChannel path, 2 tabs", "lockBroadcastPair", 5);
  }
  timeRow("lock hand-off tab→tab, Web Locks path", "handoffWeb", { text: "≤2×", max: 2 });
  {
    const r = results.handoffBroadcast;
    const ms = median(r.crm);
    rows.push({
      name: "lock hand-off tab→tab, BroadcastChannel path",
      crm: spread(r.crm, fmtMs),
      base: spread(r.base, fmtMs),
      ratio: r.crm.length && r.base.length ? `${(ms / median(r.base)).toFixed(2)}×` : "n/a",
      goal: r.crm.length ? `<20 ms${ms < 20 ? " ok" : " MISSED"}` : "<20 ms",
    });
  }
  {
    const r = results.recordEvent;
    const seen = r.crm.filter(Boolean);
    rows.push({
      name: "record committed → seen in another tab",
      crm: seen.length ? `${spread(seen.map((v) => v.ms), fmtMs)} (${seen[0].origin})` : "n/a (not wired)",
      base: spread(r.base, fmtMs),
      ratio: seen.length ? `${(median(seen.map((v) => v.ms)) / median(r.base)).toFixed(2)}×` : "n/a",
      goal: seen.length ? `<2 ms${median(seen.map((v) => v.ms)) < 2 ? " ok" : " MISSED"}` : "<2 ms",
    });
    const fromSave = seen.map((v) => v.fromSave).filter((v) => typeof v === "number");
    rows.push({
      name: "  the same from the save (PATCH to the server included)",
      crm: fromSave.length ? spread(fromSave, fmtMs) : "n/a",
      base: spread(r.base, fmtMs),
      ratio: fromSave.length ? `${(median(fromSave) / median(r.base)).toFixed(2)}×` : "n/a",
      goal: "",
    });
  }
  {
    const s = results.saves.crm[0];
    rows.push({
      name: "1,000 saves of one record in one debounce window",
      crm: s ? `${s.requests} request${s.requests === 1 ? "" : "s"} (${fmtMs(s.ms)}, ${s.statuses})` : "n/a",
      base: "1000 requests (one PATCH per call)",
      ratio: s ? `${(s.requests / 1000).toFixed(3)}×` : "n/a",
      goal: s ? `1 request${s.requests === 1 ? " ok" : " MISSED"}` : "1 request",
    });
  }
  {
    const fmtRps = (v) => `${v.toFixed(0)} req/s`;
    rows.push({
      name: `server: PATCH, ${clients} clients, loopback`,
      crm: spread(server.PATCH, fmtRps),
      base: `${spread(server.GET, fmtRps)} (GET)`,
      ratio: `${(median(server.PATCH) / median(server.GET)).toFixed(2)}×`,
      goal: server.conflicts ? `${server.conflicts} 409s retried` : "",
    });
  }
  let gzTotal = 0;
  for (const f of size) {
    gzTotal += f.gz;
    rows.push({ name: `size: pkg/${f.file}`, crm: `${fmtKb(f.gz)} gz`, base: `${fmtKb(f.raw)} raw`, ratio: "", goal: "" });
  }
  rows.push({
    name: "size: shipped module (wasm + js)",
    crm: `${fmtKb(gzTotal)} gz`,
    base: `${fmtKb(size.reduce((a, f) => a + f.raw, 0))} raw`,
    ratio: "",
    goal: `≤60 KB gz${gzTotal <= 60 * 1024 ? " ok" : " MISSED"}`,
  });
  if (named) {
    for (const f of named.top) {
      const short = f.name.length > 60 ? `${f.name.slice(0, 57)}...` : f.name;
      rows.push({
        name: `  wasm: ${short}`,
        crm: fmtKb(f.size),
        base: `${((f.size / named.total) * 100).toFixed(1)}% of code`,
        ratio: "",
        goal: "",
      });
    }
  }

  // ----- peer rows ----------------------------------------------------------
  const peerRows = [];
  const peerRow = (name, key) => {
    const r = results[key];
    const ratio = r.crm.length && r.base.length ? median(r.crm) / median(r.base) : null;
    peerRows.push({
      name,
      crm: spread(r.crm, fmtMs),
      base: spread(r.base, fmtMs),
      ratio: ratio === null ? "n/a" : `${ratio.toFixed(ratio < 0.1 ? 3 : 2)}×`,
    });
  };
  const dexie = `Dexie ${peerVersion("dexie")}`;
  const kv = `idb-keyval ${peerVersion("idb-keyval")}`;
  const bc = `broadcast-channel ${peerVersion("broadcast-channel")}`;
  peerRow(`${dexie}: LocalStore.put | table.put, per put`, "dexiePut");
  peerRow(`${dexie}: LocalStore.get | table.get, per get`, "dexieGet");
  peerRow(`${dexie}: putMany | bulkPut, 1,000 records`, "dexieBulkPut");
  peerRow(`${kv}: LocalStore.put | set, per put`, "kvSet");
  peerRow(`${kv}: LocalStore.get | get, per get`, "kvGet");
  peerRow(`${bc}: leader closes → next leads, Web Locks`, "electWeb");
  peerRow(`${bc}: leader closes → next leads, BroadcastChannel`, "electBroadcast");
  // The large rows: crm-sync's figures from its own rows, Dexie's from dexieLoad/dexieQuery.
  const besideDexie = (name, crmKey, dexieKey, f) => {
    const crm = pick(results[crmKey].crm, f);
    const peer = pick(results[dexieKey].base, f);
    const ratio = crm.length && peer.length ? median(crm) / median(peer) : null;
    peerRows.push({
      name,
      crm: spread(crm, fmtMs),
      base: spread(peer, fmtMs),
      ratio: ratio === null ? "n/a" : `${ratio.toFixed(ratio < 0.1 ? 3 : 2)}×`,
    });
  };
  const largeCount = loadedLarge[0] ?? large;
  besideDexie(`${dexie}: load | bulkPut per page, ${largeCount} customers`, "loadLarge", "dexieLoad", (v) => v.ms);
  besideDexie(`${dexie}: longest task during that load (longtask)`, "loadLarge", "dexieLoad", (v) => v.longtask);
  besideDexie(`${dexie}: query | indexed where + filter + sortBy, first run`, "query", "dexieQuery", (v) => v.cold);
  besideDexie(`${dexie}: the same query after one record changed`, "query", "dexieQuery", (v) => v.warm);

  // ----- size table ---------------------------------------------------------
  const gzCrm = size.reduce((a, f) => a + f.gz, 0);
  const sizeRows = [
    {
      name: "crm-sync (pkg/*.wasm + pkg/*.js)",
      crm: `${fmtKb(gzCrm)} gz`,
      base: `${fmtKb(size.reduce((a, f) => a + f.raw, 0))} raw`,
      ratio: "1.00×",
    },
    ...peerSize.map((p) => ({
      name: p.label,
      crm: `${fmtKb(p.gz)} gz${p.wasm ? ` (${fmtKb(p.js)} js + ${fmtKb(p.wasm)} wasm)` : ""}`,
      base: `${fmtKb(p.raw)} raw`,
      ratio: `${(gzCrm / p.gz).toFixed(2)}×`,
    })),
  ];

  const cpu = (cpus()[0]?.model ?? "unknown").trim();
  const head = [
    `crm-sync bench: ${ROUNDS} rounds per row, median ±spread ((max-min)/median); ratio = crm-sync / baseline (time: lower is better)`,
    `machine: ${cpus().length} cores, ${cpu}; Chromium ${chromium} headless; node ${process.version}; server: debug build`,
    named ? `wasm code: ${fmtKb(named.total)} in ${named.functions} functions (sizes of the -Os build with names kept)` : "",
    "",
  ].filter((l, k) => l || k === 3);
  printTable(head, rows);
  printTable(
    ["", "Peers: crm-sync beside another library doing the same job, same page, same run; ratio = crm-sync / peer"],
    peerRows,
    ["benchmark (crm-sync | peer)", "crm-sync", "peer", "ratio"],
  );
  printTable(
    ["", "Size: each peer's default use bundled by esbuild --minify from www/bench/node_modules, gzip -9 per file (www/bench/size/)"],
    sizeRows,
    ["module", "gzipped", "raw", "crm-sync ÷ it"],
  );
  if (process.env.BENCH_JSON) {
    writeFileSync(process.env.BENCH_JSON, JSON.stringify({ head, rows, peerRows, sizeRows, results }, null, 2));
  }
  log(`finished in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

main().catch((e) => {
  console.error(`bench: ${e.stack ?? e}`);
  process.exit(1);
});
