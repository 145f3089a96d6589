#!/usr/bin/env node
// Fails when a file of the repository names a file or folder that is not in
// the repository, so that the README, the docs, doc comments, code comments
// and scripts never point a reader at something missing (as they once did at
// specifications kept outside the repository).
//
//   node scripts/check-links.mjs        prints every broken reference, exits 1 if any
//
// What counts as a reference, in every tracked text file (sources, docs,
// scripts, tests, manifests; lock files and generated output excluded):
//
// 1. A relative Markdown link or image, `[text](target)` or `![alt](target)`,
//    in a .md file: resolved against that file's folder. In docs/ (the
//    VitePress site) `/guide/tabs` means docs/guide/tabs.md, and a target without an
//    extension may name a page (its `.md` file) or a folder. Web addresses, anchors
//    and mail links are not checked; the TypeDoc output (`/api/...`) is made
//    by `make docs`.
// 2. A path-like word anywhere: `dir/name.ext` (a known extension) or a
//    folder `dir/sub/` whose first part is a top-level entry of the
//    repository. It must exist relative to the repository's root, to the
//    file's folder or to one of the folders above it. Paths that .gitignore
//    covers (pkg/, target/, www/dist, data/, the built site) are output that a
//    build makes, and are not required to exist.
// 3. A bare Markdown file name such as `README.md`: some file of that name
//    must be in the repository.
//
// A line can opt out with `check-links: ignore` (for an example of a path
// that is meant not to exist).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, posix, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const git = (args, input) =>
  execFileSync("git", args, { cwd: root, encoding: "utf8", input, maxBuffer: 64 << 20 });

const EXTENSIONS = "md|rs|ts|tsx|js|mjs|cjs|sh|json|toml|png|svg|css|html|csv|yml|yaml|txt|lock|mts";
const SCANNED = /\.(md|rs|ts|tsx|js|mjs|cjs|sh|toml|json|html|css|mts|yml|yaml)$|(^|\/)Makefile$/;
const SKIPPED = /(^|\/)(package-lock\.json|Cargo\.lock)$/;

const tracked = git(["ls-files", "-z", "--cached", "--others", "--exclude-standard"]).split("\0").filter(Boolean);
const files = tracked.filter((f) => SCANNED.test(f) && !SKIPPED.test(f));
const basenames = new Set(tracked.map((f) => posix.basename(f)));
const topLevel = new Set(tracked.map((f) => f.split("/")[0]));

const exists = (p) => existsSync(join(root, p));
const inRepo = (p) => {
  const rel = normalize(p);
  return !rel.startsWith("..") && !rel.startsWith("/");
};

// Candidates are checked for existence first; only the missing ones are
// asked about .gitignore, in one call.
const missing = []; // { file, line, ref, candidates }

function candidatesFor(file, ref) {
  const dirs = [];
  for (let d = dirname(file); ; d = dirname(d)) {
    dirs.push(d === "." ? "" : d);
    if (d === "." || d === "/" || d === "") break;
  }
  dirs.push("");
  return [...new Set(dirs.map((d) => normalize(join(d, ref))))];
}

function checkPath(file, lineNo, ref, candidates) {
  if (candidates.some((c) => inRepo(c) && exists(c))) return;
  missing.push({ file, line: lineNo, ref, candidates: candidates.filter(inRepo) });
}

const mdLink = /!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g;
const pathWord = new RegExp(
  String.raw`(?<![\w@:/.~$=-])((?:\.\.?/)*[A-Za-z0-9_][\w.-]*(?:/[\w.-]+)*/(?:[\w.-]+\.(?:${EXTENSIONS})\b|(?=[\s\`'")\],;:]|$)))`,
  "g",
);
const bareMd = /(?<![\w/.-])([A-Za-z0-9_][\w-]*\.md)\b/g;

for (const file of files) {
  let text;
  try {
    if (statSync(join(root, file)).size > 2_000_000) continue;
    text = readFileSync(join(root, file), "utf8");
  } catch {
    continue; // deleted in the work tree, or not text
  }
  const lines = text.split("\n");
  const isMd = file.endsWith(".md");
  const inSite = file.startsWith("docs/");
  lines.forEach((line, i) => {
    if (line.includes("check-links: ignore")) return;
    const lineNo = i + 1;
    const linkSpans = [];

    if (isMd) {
      for (const m of line.matchAll(mdLink)) {
        linkSpans.push([m.index, m.index + m[0].length]);
        let target = m[1].split("#")[0].split("?")[0];
        if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith("//")) continue;
        if (inSite && /^\/?api\//.test(target)) continue; // TypeDoc output
        let base;
        if (target.startsWith("/")) {
          if (!inSite) { missing.push({ file, line: lineNo, ref: target, candidates: [] }); continue; }
          base = normalize(join("docs", target));
        } else {
          base = normalize(join(dirname(file), decodeURI(target)));
        }
        const options = [base];
        if (inSite && !/\.[a-z0-9]+$/i.test(base)) options.push(`${base.replace(/\/$/, "")}.md`, join(base, "index.md"));
        if (inSite && base.endsWith(".html")) options.push(base.replace(/\.html$/, ".md"));
        if (inSite) options.push(...options.map((o) => normalize(join("docs/public", relative("docs", o)))));
        checkPath(file, lineNo, target, options);
      }
    }

    for (const m of line.matchAll(pathWord)) {
      if (linkSpans.some(([a, b]) => m.index >= a && m.index < b)) continue;
      const ref = m[1];
      const first = ref.replace(/^(\.\.?\/)+/, "").split("/")[0];
      const hasExt = new RegExp(String.raw`\.(?:${EXTENSIONS})$`).test(ref);
      // A folder only counts when it starts at a top-level entry
      // (`src/core/`), so that `a/b` in prose or an npm scope is not taken
      // for a path.
      if (!hasExt && !(topLevel.has(first) && ref.endsWith("/"))) continue;
      if (!hasExt && !ref.startsWith(".") && !topLevel.has(first)) continue;
      if (/[*{}<>]/.test(ref)) continue;
      checkPath(file, lineNo, ref, candidatesFor(file, ref));
    }

    for (const m of line.matchAll(bareMd)) {
      if (linkSpans.some(([a, b]) => m.index >= a && m.index < b)) continue;
      if (!basenames.has(m[1])) missing.push({ file, line: lineNo, ref: m[1], candidates: [] });
    }
  });
}

// Built output is named in .gitignore: a reference to it is fine.
let broken = missing;
const asked = [...new Set(missing.flatMap((m) => m.candidates))];
if (asked.length) {
  let ignored = "";
  try {
    ignored = git(["check-ignore", "--no-index", "--stdin"], asked.join("\n") + "\n");
  } catch (e) {
    ignored = e.stdout ?? ""; // exit 1: none ignored
  }
  const ignoredSet = new Set(ignored.split("\n").filter(Boolean));
  broken = missing.filter((m) => !m.candidates.some((c) => ignoredSet.has(c)));
}

for (const m of broken) console.log(`${m.file}:${m.line}: names ${m.ref}, which is not in the repository`);
console.log(`check-links: ${files.length} files, ${broken.length} broken reference(s)`);
process.exit(broken.length ? 1 : 0);
