// The server soak of `make bench` (scripts/soak.sh starts a release server on
// a loopback port and calls this): a login flood, many small PATCHes of big
// records, many comments on one record. It reports the server's memory (RSS)
// and the database's growth after each phase; it never fails on a goal
// (RSS under 200 MB; the database growing with the bytes changed, not with
// record size × changes).
//
// Environment: SOAK_BASE_URL (the server), SOAK_PID (its process id, for
// /proc/PID/status), SOAK_DB (its SQLite file), SOAK_JSON (raw results, optional).
// Every request goes to SOAK_BASE_URL, which soak.sh binds to 127.0.0.1.
import { readFileSync, statSync, writeFileSync } from "node:fs";

const BASE = process.env.SOAK_BASE_URL ?? "http://127.0.0.1:8080";
const PID = process.env.SOAK_PID;
const DB = process.env.SOAK_DB;
const LOGINS = 500;
const PATCHES = 10000;
const COMMENTS = 1000;
const BIG_FIELD = 100 * 1024;
const RECORDS = 8;
const DEADLINE = Date.now() + 10 * 60 * 1000; // never more than 10 minutes

const log = (...a) => console.error("soak:", ...a);

function rssMb() {
  const status = readFileSync(`/proc/${PID}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/** Size of the database file and of its write-ahead log (which SQLite reuses
 * after each checkpoint, so it stays bounded), in MB. */
function fileMb(suffix) {
  try {
    return statSync(DB + suffix).size / (1024 * 1024);
  } catch {
    return 0; // no WAL file yet
  }
}

async function api(method, path, { token, body, headers = {} } = {}) {
  const res = await fetch(`${BASE}/api${path}`, {
    method,
    headers: {
      ...(body === undefined ? {} : { "content-type": "application/json" }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, text, body: text && text.startsWith("{") ? JSON.parse(text) : null };
}

/** Runs `count` jobs `width` at a time; `job(i)` returns a status. */
async function pool(count, width, job) {
  const statuses = {};
  let next = 0;
  async function worker() {
    while (next < count && Date.now() < DEADLINE) {
      const i = next++;
      const status = await job(i);
      statuses[status] = (statuses[status] ?? 0) + 1;
    }
  }
  await Promise.all(Array.from({ length: width }, worker));
  return statuses;
}

const rows = [];
async function phase(name, run) {
  const rss0 = rssMb();
  const db0 = fileMb("");
  const t0 = Date.now();
  const detail = await run();
  const row = {
    phase: name,
    rssBeforeMb: +rss0.toFixed(1),
    rssAfterMb: +rssMb().toFixed(1),
    dbGrowthMb: +(fileMb("") - db0).toFixed(2),
    walMb: +fileMb("-wal").toFixed(2),
    seconds: +((Date.now() - t0) / 1000).toFixed(1),
    detail,
  };
  rows.push(row);
  log(JSON.stringify(row));
}

const login = await api("POST", "/login", { body: { username: "alice", password: "demo" } });
if (login.status !== 200) throw new Error(`login: ${login.status} ${login.text}`);
const token = login.body.token;

await phase(`${LOGINS} wrong logins, 16 at a time`, async () =>
  pool(LOGINS, 16, async (i) => {
    // Unknown names: each costs a full password check (against the dummy hash).
    const r = await api("POST", "/login", { body: { username: `flood${i}`, password: "x" } });
    return r.status;
  }),
);

const ids = Array.from({ length: RECORDS }, (_, i) => `soak-${i}`);
const versions = {};
await phase(`${RECORDS} records with a ${BIG_FIELD / 1024} KB field`, async () => {
  const big = "n".repeat(BIG_FIELD);
  for (const id of ids) {
    const r = await api("POST", "/notes", { token, body: { id, fields: { notes: big, n: 0 } } });
    versions[id] = r.body?.version ?? 1;
  }
  return { bytesWritten: RECORDS * BIG_FIELD };
});

await phase(`${PATCHES} small PATCHes of those records, one writer per record`, async () => {
  const statuses = {};
  // One writer per record, so every PATCH names the current version.
  await Promise.all(
    ids.map(async (id, w) => {
      for (let i = w; i < PATCHES && Date.now() < DEADLINE; i += RECORDS) {
        const r = await api("PATCH", `/notes/${id}`, {
          token,
          body: { fields: { n: i } },
          // As the browser module sends every write: with a key.
          headers: { "if-match": `"${versions[id]}"`, "idempotency-key": `soak-patch-${i}` },
        });
        if (r.status === 200) versions[id] = r.body.version;
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
      }
    }),
  );
  return { statuses, bytesChangedApprox: PATCHES * 12 };
});

await phase(`${COMMENTS} comments on one record, 8 at a time`, async () => {
  const text = "c".repeat(100);
  const statuses = await pool(COMMENTS, 8, async (i) => {
    const r = await api("POST", `/notes/${ids[0]}/comments`, {
      token,
      body: { id: `soak-comment-${i}`, text },
      headers: { "idempotency-key": `soak-comment-${i}` },
    });
    return r.status;
  });
  return { statuses, bytesWritten: COMMENTS * text.length };
});

await phase("one changes-feed page from the start", async () => {
  const res = await fetch(`${BASE}/api/changes?limit=1000`, {
    headers: { authorization: `Bearer ${token}` },
  });
  const text = await res.text();
  const page = JSON.parse(text);
  return { status: res.status, pageMb: +(text.length / (1024 * 1024)).toFixed(2), entries: page.changes?.length, more: page.more };
});

console.log("\nServer soak (release build; reported, not asserted; goal: RSS < 200 MB)\n");
console.log("| phase | RSS before (MB) | RSS after (MB) | DB file growth (MB) | WAL (MB) | s | detail |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
for (const r of rows) {
  console.log(
    `| ${r.phase} | ${r.rssBeforeMb} | ${r.rssAfterMb} | ${r.dbGrowthMb} | ${r.walMb} | ${r.seconds} | ${JSON.stringify(r.detail)} |`,
  );
}
if (process.env.SOAK_JSON) writeFileSync(process.env.SOAK_JSON, JSON.stringify(rows, null, 2));
