//! Imports run downhill: no cycle between the top-level modules of `src/`.
//!
//! A top-level module is `src/x.rs` together with everything under `src/x/`.
//! Module `a` depends on module `b` when any `crate::b` path appears in `a`'s
//! non-test code (a `use crate::{b, ...}` group counts for each name in it,
//! and so does a doc link, which a reader follows just the same). Test code
//! (`tests.rs` files and `#[cfg(test)]` modules) may reach anywhere.
//!
//! A cycle fails the test with its modules and, for each dependency inside
//! it, the files that make it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// For each dependency `a -> b`: the files of `a` that name `b`.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

#[test]
fn top_level_modules_import_downhill() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    assert!(
        graph.len() > 4 && graph.values().any(|deps| !deps.is_empty()),
        "the walk of {} found no modules or no imports: {graph:?}",
        src.display()
    );
    let cycles = cycles(&graph);
    if cycles.is_empty() {
        return;
    }
    let mut report = String::new();
    for scc in &cycles {
        report.push_str(&format!("cycle between {scc:?}:\n"));
        for a in scc {
            for (b, files) in &graph[a] {
                if scc.contains(b) {
                    report.push_str(&format!("  {a} -> {b}  ({files:?})\n"));
                }
            }
        }
    }
    panic!("top-level modules import each other in a cycle; move what the lower module needs down, or out of the higher one:\n{report}");
}

#[test]
fn the_walk_reads_groups_doc_links_and_skips_test_code() {
    let text = r#"
//! See [`crate::rules`].
use crate::{config::Config, http_util::{self, Body}, identity};
fn f() { crate::clock::now(); let x = not_crate::session; }
#[cfg(test)]
mod tests { use crate::pipeline; fn g() { if true { crate::proxy::x(); } } }
#[cfg(all(test, feature = "x"))]
mod more { use crate::server; }
#[cfg(test)]
mod elsewhere;
fn after() { crate::metrics::global(); }
"#;
    let names = crate_paths(&strip_test_modules(text));
    let expected: BTreeSet<String> = [
        "rules",
        "config",
        "http_util",
        "identity",
        "clock",
        "metrics",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
}

/// The dependency graph of the top-level modules under `src`.
fn graph(src: &Path) -> Graph {
    let mut tops = BTreeSet::new();
    for entry in fs::read_dir(src).expect("src/ is readable") {
        let path = entry.expect("src/ is readable").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            tops.insert(name);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if stem != "lib" && stem != "main" {
                tops.insert(stem.to_owned());
            }
        }
    }
    let mut graph: Graph = tops.iter().map(|t| (t.clone(), BTreeMap::new())).collect();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if !tops.contains(&top) || is_test_file(rel) {
            continue;
        }
        let text = fs::read_to_string(&file).expect("source files are readable");
        for dep in crate_paths(&strip_test_modules(&text)) {
            if dep != top && tops.contains(&dep) {
                graph
                    .get_mut(&top)
                    .unwrap()
                    .entry(dep)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("source directories are readable") {
        let path = entry.expect("source directories are readable").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// `tests.rs` files and anything under a `tests/` directory.
fn is_test_file(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == "tests.rs")
        || rel.components().any(|c| c.as_os_str() == "tests")
}

/// `text` without its test modules: a `mod` item (with or without a body)
/// right after a `#[cfg(...)]` attribute that names `test`.
fn strip_test_modules(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(") {
        out.push_str(&rest[..at]);
        let attr_end = match closing(rest, at + 1, b'[', b']') {
            Some(end) => end + 1,
            None => {
                rest = &rest[at..];
                break;
            }
        };
        let attr = &rest[at..attr_end];
        let after = rest[attr_end..].trim_start();
        let item = after
            .strip_prefix("pub(crate) ")
            .or_else(|| after.strip_prefix("pub "))
            .unwrap_or(after);
        let is_test = words(attr).any(|w| w == "test") && !attr.contains("not(test");
        if !(is_test && item.starts_with("mod ")) {
            out.push_str(attr);
            rest = &rest[attr_end..];
            continue;
        }
        let item_start = rest.len() - item.len();
        let semi = rest[item_start..].find(';').map(|i| item_start + i);
        let brace = rest[item_start..].find('{').map(|i| item_start + i);
        rest = match (semi, brace) {
            (Some(s), b) if b.is_none_or(|b| s < b) => &rest[s + 1..],
            (_, Some(b)) => match closing(rest, b, b'{', b'}') {
                Some(end) => &rest[end + 1..],
                None => "",
            },
            _ => "",
        };
    }
    out.push_str(rest);
    out
}

/// The index of the bracket closing the one at `open`.
fn closing(text: &str, open: usize, up: u8, down: u8) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate().skip(open) {
        if b == up {
            depth += 1;
        } else if b == down {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
    }
    None
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The first segment of every `crate::` path in `text`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::").map(|i| from + i) {
        from = i + "crate::".len();
        if i > 0 && is_ident(bytes[i - 1]) {
            continue;
        }
        if bytes.get(from) == Some(&b'{') {
            let Some(end) = closing(text, from, b'{', b'}') else {
                continue;
            };
            out.extend(group_heads(&text[from + 1..end]));
        } else {
            let len = text[from..].bytes().take_while(|b| is_ident(*b)).count();
            out.insert(text[from..from + len].to_owned());
        }
    }
    out
}

/// The first segment of each item of a `{a::b, c, d::{e, f}}` group (its inside).
fn group_heads(inside: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = 0;
    for (i, b) in inside.bytes().enumerate().chain([(inside.len(), b',')]) {
        match b {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                let item = inside[item_start..i.min(inside.len())].trim();
                let head: String = item
                    .bytes()
                    .take_while(|b| is_ident(*b))
                    .map(char::from)
                    .collect();
                if !head.is_empty() && head != "self" {
                    heads.push(head);
                }
                item_start = i + 1;
            }
            _ => {}
        }
    }
    heads
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph[v].keys() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.found.push(scc);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}
