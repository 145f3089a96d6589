// PATCHes per second a set of server instances sustains together (one row of
// `make bench`, run by scripts/bench-pg.sh): CLIENTS loops, spread over the
// instances in turn, each PATCHing its own demo customer with the version it
// got back, for SECONDS. Prints one JSON line:
// { "instances", "clients", "seconds", "patches", "perSecond", "errors" }.
//
//   node www/bench/patch-rate.mjs URL [URL...]
//   PATCH_CLIENTS (default 16), PATCH_SECONDS (default 5)

const urls = process.argv.slice(2);
if (urls.length === 0) {
  console.error("usage: node www/bench/patch-rate.mjs URL [URL...]");
  process.exit(2);
}
const clients = Number(process.env.PATCH_CLIENTS ?? 16);
const seconds = Number(process.env.PATCH_SECONDS ?? 5);

async function login(base) {
  const r = await fetch(`${base}/api/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ username: "alice", password: "demo" }),
  });
  if (!r.ok) throw new Error(`login on ${base}: ${r.status}`);
  return (await r.json()).token;
}

const tokens = await Promise.all(urls.map(login));
const deadline = performance.now() + seconds * 1000;
let patches = 0;
let errors = 0;

async function client(n) {
  const base = urls[n % urls.length];
  const token = tokens[n % urls.length];
  const path = `${base}/api/customers/c-${String(n + 1).padStart(4, "0")}`;
  const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
  let version = (await (await fetch(path, { headers })).json()).version;
  let i = 0;
  while (performance.now() < deadline) {
    const r = await fetch(path, {
      method: "PATCH",
      headers: { ...headers, "if-match": `"${version}"` },
      body: JSON.stringify({ fields: { city: `bench ${n} ${i++}` } }),
    });
    const body = await r.json();
    if (r.status === 200) {
      patches += 1;
      version = body.version;
    } else {
      errors += 1;
      version = body?.error?.details?.current?.version ?? version;
    }
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: clients }, (_, n) => client(n)));
const took = (performance.now() - started) / 1000;
console.log(
  JSON.stringify({
    instances: urls.length,
    clients,
    seconds: Math.round(took * 100) / 100,
    patches,
    perSecond: Math.round(patches / took),
    errors,
  }),
);
