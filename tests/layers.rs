//! The layers of ARCHITECTURE.md are the layers of the code: the module import graph,
//! derived from the `crate::` paths in `src/`, only goes down the list, and holds no
//! cycle between modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → layer, from the ```text block under `## Layers`.
fn layers(architecture: &str) -> BTreeMap<String, u32> {
    let section = architecture
        .split("\n## Layers\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let block = section
        .split("```text\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the layers section holds a ```text block");
    let mut out = BTreeMap::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let n: u32 = words.next().unwrap().parse().expect("a layer number");
        for m in words {
            assert!(out.insert(m.to_string(), n).is_none(), "{m} listed twice");
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a source file: `src/ship/sinks/http.rs` → `ship::sinks::http`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// Every `crate::a::b::…` path of a file's code (comments left out), with the names
/// of a `crate::a::{b, c::d}` group each counted as `crate::a::b`, `crate::a::c`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `auditship_crate::` or similar: not this crate
            }
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path: Vec<String> = rest[..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if rest[end..].starts_with('{') {
                let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |i| end + i)];
                for name in group.split(',') {
                    let first = name.trim().split("::").next().unwrap_or("").trim();
                    if !first.is_empty() && first != "self" {
                        let mut p = path.clone();
                        p.push(first.to_string());
                        out.push(p);
                    }
                }
            }
            if !path.is_empty() {
                out.push(path);
            }
        }
    }
    out
}

/// Strongly connected components (Tarjan) of more than one node.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> T<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on.insert(v);
            for w in self.g.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[w].min(self.low[v]);
                    self.low.insert(v, l);
                } else if self.on.contains(w) {
                    let l = self.index[w].min(self.low[v]);
                    self.low.insert(v, l);
                }
            }
            if self.low[v] == self.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(w);
                    comp.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    self.out.push(comp);
                }
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.out
}

/// The file-level and top-level import graphs of `src/`.
fn graphs(
    src: &Path,
) -> (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, BTreeSet<String>>,
) {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, PathBuf> = files
        .iter()
        .map(|f| (module_of(src, f), f.clone()))
        .filter(|(m, _)| m != "lib" && m != "main")
        .collect();
    let mut by_file: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, f) in &modules {
        let from_top = m.split("::").next().unwrap().to_string();
        top.entry(from_top.clone()).or_default();
        let edges = by_file.entry(m.clone()).or_default();
        for path in crate_paths(&std::fs::read_to_string(f).unwrap()) {
            // The longest prefix that is a module file.
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|p| modules.contains_key(p));
            let Some(target) = target else { continue };
            if &target != m {
                edges.insert(target.clone());
            }
            let to_top = target.split("::").next().unwrap().to_string();
            if to_top != from_top {
                top.get_mut(&from_top).unwrap().insert(to_top);
            }
        }
    }
    (by_file, top)
}

#[test]
fn modules_import_only_the_layers_below_them_and_form_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layer = layers(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let (by_file, top) = graphs(&root.join("src"));
    assert!(top.len() > 20, "the graph was derived: {top:?}");

    let unplaced: Vec<&String> = top.keys().filter(|m| !layer.contains_key(*m)).collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from ARCHITECTURE.md's layers: {unplaced:?}"
    );
    let mut wrong = Vec::new();
    for (from, tos) in &top {
        for to in tos {
            if layer[to] >= layer[from] {
                wrong.push(format!(
                    "{from} (layer {}) imports {to} (layer {})",
                    layer[from], layer[to]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );

    let top_cycles = cycles(&top);
    assert!(top_cycles.is_empty(), "modules in a cycle: {top_cycles:?}");
    // Files of one module may still know each other; a cycle through files of
    // different modules would be a cycle between modules.
    let file_cycles = cycles(&by_file);
    for c in &file_cycles {
        let modules: BTreeSet<&str> = c.iter().map(|f| f.split("::").next().unwrap()).collect();
        assert_eq!(
            modules.len(),
            1,
            "files of several modules in a cycle: {c:?}"
        );
    }
    let sizes: Vec<usize> = file_cycles.iter().map(Vec::len).collect();
    println!("file-level cycles (within one module): {sizes:?} {file_cycles:?}");
}

#[test]
fn the_graph_reader_sees_uses_groups_and_paths_but_not_comments() {
    let text = "use crate::a::{b, c::d, self};\n// crate::z::y\nlet x = crate::e::f(1);\n";
    let got: Vec<String> = crate_paths(text).iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["a::b", "a::c", "a", "e::f"]);
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(cycles(&g), [vec!["a", "b", "c"]]);
}
