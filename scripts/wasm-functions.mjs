// Reads a wasm module that kept its name section (an -Os build made with
// `wasm-opt -g`) and lists its functions by code size, as `twiggy top`
// would, with no extra tool: code-section body sizes, named from the name
// section. `make size` prints its tables; `make bench` uses `largestFunctions`.
//
//   node scripts/wasm-functions.mjs named.wasm [count]
//
// prints the `count` largest functions (20) and the code size per module
// (`crm_sync::web::client`, `alloc`, `serde`, ...).
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** Every function body with its size and name (hash suffix stripped). */
export function functionSizes(path) {
  const d = readFileSync(path);
  let i = 8;
  const leb = () => {
    let r = 0;
    let s = 0;
    for (;;) {
      const b = d[i++];
      r += (b & 0x7f) * 2 ** s;
      s += 7;
      if (b < 0x80) return r;
    }
  };
  const name = () => {
    const n = leb();
    const s = d.toString("utf8", i, i + n);
    i += n;
    return s;
  };
  let imported = 0;
  const bodies = [];
  const names = new Map();
  while (i < d.length) {
    const id = d[i++];
    const size = leb();
    const end = i + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        name();
        name();
        const kind = d[i++];
        if (kind === 0) {
          leb();
          imported++;
        } else if (kind === 1) {
          i++;
          if (leb() & 1) leb(), leb();
          else leb();
        } else if (kind === 2) {
          if (leb() & 1) leb(), leb();
          else leb();
        } else if (kind === 3) i += 2;
        else if (kind === 4) i += 1, leb();
      }
    } else if (id === 10) {
      for (let n = leb(); n > 0; n--) {
        const start = i;
        const len = leb();
        bodies.push(i - start + len);
        i += len;
      }
    } else if (id === 0 && name() === "name") {
      while (i < end) {
        const sub = d[i++];
        const len = leb();
        const subEnd = i + len;
        if (sub === 1) for (let n = leb(); n > 0; n--) names.set(leb(), name());
        i = subEnd;
      }
    }
    i = end;
  }
  return bodies.map((size, k) => ({
    size,
    name: (names.get(imported + k) ?? `func[${imported + k}]`).replace(/::h[0-9a-f]{16}$/, ""),
  }));
}

/** The `count` largest functions, the total code size and the function count. */
export function largestFunctions(path, count) {
  const rows = functionSizes(path);
  const total = rows.reduce((a, r) => a + r.size, 0);
  rows.sort((a, b) => b.size - a.size);
  return { total, functions: rows.length, top: rows.slice(0, count) };
}

/**
 * The module a function belongs to: the path of the item it is defined in,
 * `crm_sync::` paths to three segments (`crm_sync::web::client`), others to
 * their crate (`alloc`, `serde`). For a trait impl (`<A as B>::f`) the type
 * `A` decides, as the code is written where `A` is unless `A` is foreign.
 */
export function moduleOf(name) {
  // Crate disambiguators (`dlmalloc[e24a27700634d609]`) are not part of the path.
  let n = name.replace(/\[[0-9a-f]{16}\]/g, "");
  n = n.startsWith("<") ? n.slice(1) : n;
  n = n.replace(/^(&mut |&|\*const |\*mut |dyn )+/, "");
  const path = n.split(/[<> ]/)[0];
  const parts = path.split("::").filter(Boolean);
  if (/^[A-Z&]/.test(path)) return "(generic impls)";
  if (parts.length < 2) return "(exports, shims, unnamed)";
  if (!/^[a-z_][a-z0-9_]*$/.test(parts[0])) return "(other)";
  if (parts[0] === "crm_sync") return parts.slice(0, Math.min(3, parts.length - 1)).join("::") || "crm_sync";
  return parts[0];
}

/** Code size per module, largest first. */
export function moduleSizes(path) {
  const by = new Map();
  for (const { size, name } of functionSizes(path)) {
    const m = moduleOf(name);
    const e = by.get(m) ?? { module: m, size: 0, functions: 0 };
    e.size += size;
    e.functions++;
    by.set(m, e);
  }
  return [...by.values()].sort((a, b) => b.size - a.size);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [path, count = "20"] = process.argv.slice(2);
  if (!path) {
    console.error("usage: node scripts/wasm-functions.mjs named.wasm [count]");
    process.exit(2);
  }
  const kb = (b) => `${(b / 1024).toFixed(1)} KB`.padStart(9);
  const { total, functions, top } = largestFunctions(path, Number(count));
  console.log(`wasm code: ${kb(total).trim()} in ${functions} functions (the -Os build with names kept)`);
  console.log(`\nlargest functions:`);
  for (const r of top) console.log(`${kb(r.size)}  ${r.name.length > 110 ? r.name.slice(0, 107) + "..." : r.name}`);
  console.log(`\nby module:`);
  for (const m of moduleSizes(path).slice(0, 30)) {
    console.log(`${kb(m.size)}  ${String(m.functions).padStart(5)} fns  ${m.module}`);
  }
}
