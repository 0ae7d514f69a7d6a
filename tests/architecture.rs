//! Imports run downhill: no cycle between the top-level modules of `src/`
//! (the folders), and none between the modules inside each folder.
//!
//! A top-level module is `src/x.rs` together with everything under `src/x/`.
//! Module `a` depends on module `b` when any `crate::b` path appears in `a`'s
//! non-test code (a `use crate::{b, ...}` group counts for each name in it,
//! and so does a doc link, which a reader follows just the same). Test code
//! (`tests.rs` files and `#[cfg(test)]` modules) may reach anywhere.
//!
//! One level down, the same walk inside `src/g/`: its module `a`
//! (`src/g/a.rs` and `src/g/a/`) depends on its module `b` when a
//! `crate::g::b` path appears in `a` (also spelled `crate::g::{b, ...}` or
//! `crate::{g::b, ...}`). Paths through `super::` are not followed.
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
    let graph = graph(&src, &[]);
    assert!(
        graph.len() > 4 && graph.values().any(|deps| !deps.is_empty()),
        "the walk of {} found no modules or no imports: {graph:?}",
        src.display()
    );
    let report = cycle_report(&graph);
    assert!(
        report.is_empty(),
        "top-level modules import each other in a cycle; move what the lower module needs down, or out of the higher one:\n{report}"
    );
}

#[test]
fn modules_inside_each_folder_import_downhill() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = 0;
    let mut imports = 0;
    let mut report = String::new();
    for entry in fs::read_dir(&src).expect("src/ is readable") {
        let dir = entry.expect("src/ is readable").path();
        if !dir.is_dir() {
            continue;
        }
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        let graph = graph(&dir, &[folder.as_str()]);
        modules += graph.len();
        imports += graph.values().map(BTreeMap::len).sum::<usize>();
        let cycles = cycle_report(&graph);
        if !cycles.is_empty() {
            report.push_str(&format!("in src/{folder}/:\n{cycles}"));
        }
    }
    assert!(
        modules > 20 && imports > 10,
        "the walk inside the folders of {} found {modules} modules and {imports} imports",
        src.display()
    );
    assert!(
        report.is_empty(),
        "modules inside a folder import each other in a cycle; move what the lower module needs down, or out of the higher one:\n{report}"
    );
}

/// Each cycle of `graph` with the dependencies inside it and the files that
/// make them; empty when there is none.
fn cycle_report(graph: &Graph) -> String {
    let mut report = String::new();
    for scc in &cycles(graph) {
        report.push_str(&format!("cycle between {scc:?}:\n"));
        for a in scc {
            for (b, files) in &graph[a] {
                if scc.contains(b) {
                    report.push_str(&format!("  {a} -> {b}  ({files:?})\n"));
                }
            }
        }
    }
    report
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

#[test]
fn the_walk_one_level_down_reads_each_spelling() {
    let text = r#"
//! See [`crate::auth::rules`] and [`crate::base`].
use crate::auth::{self, pipeline::Gateway, session::{Session, SessionId}};
use crate::{auth::oidc, base::{clock, http_util::Body}, config::Config};
fn f() { crate::auth::bearer::token::parse(); crate::endpoints::respond::x(); }
#[cfg(test)]
mod tests { use crate::auth::proxy_table; }
"#;
    let paths = crate_paths_to(&strip_test_modules(text), 2);
    let in_auth: BTreeSet<&str> = paths
        .iter()
        .filter(|p| p.len() == 2 && p[0] == "auth")
        .map(|p| p[1].as_str())
        .collect();
    assert_eq!(
        in_auth,
        ["bearer", "oidc", "pipeline", "rules", "session"].into()
    );
    let in_base: BTreeSet<&str> = paths
        .iter()
        .filter(|p| p.len() == 2 && p[0] == "base")
        .map(|p| p[1].as_str())
        .collect();
    assert_eq!(in_base, ["clock", "http_util"].into());
    assert!(paths.contains(&vec!["auth".to_owned()]));
    assert!(paths.contains(&vec!["base".to_owned()]));
    assert!(paths.contains(&vec!["endpoints".to_owned(), "respond".to_owned()]));
}

/// The dependency graph of the modules directly under `src`, which is the
/// crate's `src/` (`prefix` empty) or the folder of module `prefix` in it:
/// a module's dependencies are the modules `crate::<prefix>::b` it names.
fn graph(src: &Path, prefix: &[&str]) -> Graph {
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
        let paths = crate_paths_to(&strip_test_modules(&text), prefix.len() + 1);
        for path in paths {
            if path.len() != prefix.len() + 1 || !path.iter().zip(prefix).all(|(a, b)| a == b) {
                continue;
            }
            let dep = path.last().unwrap().clone();
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
    crate_paths_to(text, 1)
        .into_iter()
        .map(|mut p| p.swap_remove(0))
        .collect()
}

/// Every `crate::` path in `text`, cut after `depth` segments, with its
/// `{...}` groups spread out: `crate::{a::{b, c}, d}` is `a::b`, `a::c`, `d`
/// (and `a` alone at depth 1). `self` in a group names the path before it.
fn crate_paths_to(text: &str, depth: usize) -> BTreeSet<Vec<String>> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("crate::").map(|i| from + i) {
        from = i + "crate::".len();
        if i > 0 && is_ident(bytes[i - 1]) {
            continue;
        }
        spread(text, from, &mut Vec::new(), depth, &mut out);
    }
    out
}

/// The paths of the path tree starting at `text[at..]`, after `prefix`.
fn spread(
    text: &str,
    at: usize,
    prefix: &mut Vec<String>,
    depth: usize,
    out: &mut BTreeSet<Vec<String>>,
) {
    let rest = &text[at..];
    let start = at + (rest.len() - rest.trim_start().len());
    if text.as_bytes().get(start) == Some(&b'{') {
        let Some(end) = closing(text, start, b'{', b'}') else {
            return;
        };
        let mut nest = 0usize;
        let mut item = start + 1;
        for i in start + 1..=end {
            match text.as_bytes()[i] {
                b'{' => nest += 1,
                b'}' if i < end => nest -= 1,
                b',' | b'}' if nest == 0 => {
                    if !text[item..i].trim().is_empty() {
                        spread(&text[..i], item, prefix, depth, out);
                    }
                    item = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let len = text[start..].bytes().take_while(|b| is_ident(*b)).count();
    let segment = &text[start..start + len];
    if segment.is_empty() {
        return;
    }
    if segment == "self" {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    prefix.push(segment.to_owned());
    let next = start + len;
    if prefix.len() < depth && text[next..].starts_with("::") {
        spread(text, next + 2, prefix, depth, out);
    } else {
        out.insert(prefix.clone());
    }
    prefix.pop();
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
