//! The shape of the code, checked on its sources: which module may know
//! what. Test code (`#[cfg(test)]` modules) is left out: tests may reach
//! anywhere.
//!
//! - Nothing outside `grpc/` names `tonic_health` or a proto type
//!   (`cantina::v1`, `cantina::health`).
//! - `commands/` imports nothing from `grpc/`.
//! - No import cycles between modules, of any length, directly (`a` → `b`
//!   → `a`), or through their top-level modules (something in `audio` uses
//!   `config` while something in `config` uses `audio`).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use regex::Regex;

/// Every module of the server library: its path (`audio::player`) and its
/// source without its test module.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(&root).ok()?.with_extension("");
            let mut parts: Vec<String> = relative
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] || parts[0] == "bin" {
                return None;
            }
            // Test modules (`#[cfg(test)] mod …`, last in their file by
            // habit) and files that are test modules are left out.
            if parts.last().is_some_and(|p| p == "tests") {
                return None;
            }
            let source = std::fs::read_to_string(&file).ok()?;
            let test_module =
                Regex::new(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s").unwrap();
            let source = match test_module.find(&source) {
                Some(at) => source[..at.start()].to_string(),
                None => source,
            };
            Some((parts.join("::"), source))
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the source folder is readable") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The paths a `use` tree names: `crate::{a, b::{c, d}}` → `crate::a`,
/// `crate::b::c`, `crate::b::d`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let name = tree.split(" as ").next().unwrap_or(tree).trim();
        out.push(format!("{prefix}{name}"));
        return;
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let inner = &tree[open + 1..close];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&head, &inner[start..], out);
    }
}

/// Which modules each module uses.
fn dependencies(modules: &BTreeMap<String, String>) -> BTreeMap<&str, BTreeSet<&str>> {
    let uses = Regex::new(r"(?m)^\s*(?:pub(?:\([^)]*\))?\s+)?use\s+([^;]+);").unwrap();
    let paths = Regex::new(r"\b((?:crate|super)(?:::\w+)+)").unwrap();
    modules
        .iter()
        .map(|(name, source)| {
            let mut named = Vec::new();
            for tree in uses.captures_iter(source) {
                expand("", &tree[1], &mut named);
            }
            named.extend(paths.captures_iter(source).map(|c| c[1].to_string()));
            let me: Vec<&str> = name.split("::").collect();
            let mut used = BTreeSet::new();
            for path in named {
                let segments: Vec<&str> = path.split("::").collect();
                let target: Vec<&str> = match segments[0] {
                    "crate" => segments[1..].to_vec(),
                    "super" => me[..me.len() - 1]
                        .iter()
                        .chain(&segments[1..])
                        .copied()
                        .collect(),
                    _ => continue,
                };
                // The longest prefix that is a module.
                let found = (1..=target.len()).rev().find_map(|k| {
                    let candidate = target[..k].join("::");
                    modules.get_key_value(&candidate).map(|(k, _)| k.as_str())
                });
                if let Some(module) = found {
                    let nested = name.starts_with(&format!("{module}::"))
                        || module.starts_with(&format!("{name}::"));
                    if module != name && !nested {
                        used.insert(module);
                    }
                }
            }
            (name.as_str(), used)
        })
        .collect()
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

/// The cycles of a graph: its strongly connected components of more than
/// one node (Tarjan's algorithm).
fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct Search<'g, 'a> {
        graph: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<&'a str>>,
    }
    impl<'a> Search<'_, 'a> {
        fn visit(&mut self, node: &'a str) {
            let at = self.index.len();
            self.index.insert(node, at);
            self.low.insert(node, at);
            self.stack.push(node);
            for &next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    component.push(top);
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut search = Search {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for &node in graph.keys() {
        if !search.index.contains_key(node) {
            search.visit(node);
        }
    }
    search.found
}

/// The graph of top-level modules that `deps` makes.
fn top_level<'a>(
    deps: &BTreeMap<&'a str, BTreeSet<&'a str>>,
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut tops: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (a, used) in deps {
        for b in used {
            if top(a) != top(b) {
                tops.entry(top(a)).or_default().insert(top(b));
            }
        }
    }
    tops
}

#[test]
fn no_modules_import_each_other() {
    let modules = modules();
    assert!(
        modules.len() > 30,
        "the modules are found: {}",
        modules.len()
    );
    let deps = dependencies(&modules);
    assert_eq!(
        cycles(&deps),
        Vec::<Vec<&str>>::new(),
        "import cycles between modules"
    );
    let tops = top_level(&deps);
    let through_tops: Vec<_> = cycles(&tops)
        .into_iter()
        .map(|cycle| {
            let edges: Vec<_> = deps
                .iter()
                .flat_map(|(a, used)| used.iter().map(move |b| (*a, *b)))
                .filter(|(a, b)| {
                    top(a) != top(b) && cycle.contains(&top(a)) && cycle.contains(&top(b))
                })
                .collect();
            (cycle, edges)
        })
        .collect();
    assert!(
        through_tops.is_empty(),
        "import cycles through top-level modules: {through_tops:#?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let modules: BTreeMap<String, String> = [
        ("a".to_string(), "use crate::b::{Thing, other};".to_string()),
        ("b".to_string(), "fn f() { crate::a::g() }".to_string()),
        ("c::x".to_string(), "use super::y::Z;".to_string()),
        ("c::y".to_string(), "use crate::a;".to_string()),
    ]
    .into_iter()
    .collect();
    let deps = dependencies(&modules);
    assert!(deps["a"].contains("b") && deps["b"].contains("a"));
    assert!(deps["c::x"].contains("c::y"));
    assert!(deps["c::y"].contains("a"));
    assert_eq!(cycles(&deps), [vec!["a", "b"]]);
    // A longer loop, and one through top-level modules only.
    let graph: BTreeMap<&str, BTreeSet<&str>> = [
        ("p", ["q"].into()),
        ("q", ["r"].into()),
        ("r", ["p"].into()),
        ("s::one", ["t"].into()),
        ("t", ["s::two"].into()),
        ("s::two", BTreeSet::new()),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&graph), [vec!["p", "q", "r"]]);
    assert!(cycles(&top_level(&graph)).contains(&vec!["s", "t"]));
}

#[test]
fn only_the_grpc_edge_knows_proto_types_and_health() {
    let modules = modules();
    let proto = Regex::new(r"\btonic_health\b|\bcantina::(v1|health)\b").unwrap();
    let offenders: Vec<&String> = modules
        .iter()
        .filter(|(name, source)| top(name) != "grpc" && proto.is_match(source))
        .map(|(name, _)| name)
        .collect();
    assert!(offenders.is_empty(), "outside grpc/: {offenders:?}");
    let deps = dependencies(&modules);
    for (name, used) in &deps {
        if top(name) == "commands" {
            assert!(
                used.iter().all(|u| top(u) != "grpc"),
                "{name} imports from grpc/: {used:?}"
            );
        }
    }
}
