//! No import circle in `server/src`: the modules form layers (the record
//! model and the wire types at the bottom, the stores above them, the routes
//! above those, the OpenAPI document and the router on top), and a module
//! never reaches back up.
//!
//! Reads every file's `crate::` paths (in `use` lines, `use crate::{..}`
//! groups and paths written out in code) and looks for a cycle. A module in a
//! folder (`db/`) counts as one node. Left out: the crate root (`lib.rs`
//! declares every module and holds the state handlers share), the binary, and
//! `#[cfg(test)]` modules (a unit test may use a module above its own).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module a file belongs to: `records.rs` -> `records`, `server/src/db/pg.rs` -> `db`.
fn node_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let first = rel.components().next().map_or(String::new(), |c| {
        c.as_os_str().to_string_lossy().into_owned()
    });
    first.trim_end_matches(".rs").to_owned()
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("server/src can be read") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without line comments and without `#[cfg(test)]` modules.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let line = line.find("//").map_or(line, |at| &line[..at]);
        code.push_str(line);
        code.push('\n');
    }
    while let Some(at) = code.find("#[cfg(test)]\nmod ") {
        let Some(open) = code[at..].find('{').map(|o| at + o) else {
            break;
        };
        let mut depth = 0usize;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        code.replace_range(at..end, "");
    }
    code
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first names of the paths in a `{ a, b::c, d::{e, f} }` group.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut at_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => at_start = true,
            c if at_start && depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push(ident_at(&group[i..]).to_owned());
                at_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The modules `code` names through `crate::`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find("};").unwrap_or(group.len());
            found.extend(group_heads(&group[..end]));
        } else {
            found.insert(ident_at(rest).to_owned());
        }
    }
    found
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let node = node_of(&src, file);
        if node == "lib" || node == "main" {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file can be read");
        graph
            .entry(node)
            .or_default()
            .extend(imports(&code_of(&text)));
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for (node, deps) in &mut graph {
        deps.retain(|d| d != node && modules.contains(d));
    }
    graph
}

#[test]
fn the_server_modules_import_each_other_in_no_circle() {
    let graph = module_graph();
    assert!(graph.len() > 15, "the modules were read: {graph:?}");
    assert!(
        graph["record_routes"].contains("records") && graph["sheet"].contains("model"),
        "imports were read: {graph:?}"
    );
    if let Some(cycle) = find_cycle(&graph) {
        panic!("an import circle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_check_finds_a_circle_and_reads_groups() {
    let code = code_of(
        "use crate::{a, b::{c, d}, e::F};\n// crate::commented\nfn f() { crate::g::h(); }\n\
         #[cfg(test)]\nmod tests { use crate::t; }\n",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "e", "g"]);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
