//! The layers point one way: between crates (catalog <- connectors <- engine <- service, and the
//! clients apart from the service), and between the top-level modules of each crate (no import
//! circle). Read from the sources, so a change that adds a circle fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The `tarn-*` crates `krate` depends on (normal dependencies).
fn tarn_dependencies(krate: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join(krate).join("Cargo.toml")).unwrap();
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && let Some(name) = line.strip_prefix("tarn-") {
            deps.insert(format!(
                "tarn-{}",
                name.split(['.', ' ', '=']).next().unwrap()
            ));
        }
    }
    deps
}

#[test]
fn crates_depend_on_the_layers_below_them_only() {
    let expect = |krate: &str, allowed: &[&str]| {
        let deps = tarn_dependencies(krate);
        let allowed: BTreeSet<String> = allowed.iter().map(|s| s.to_string()).collect();
        assert!(
            deps.is_subset(&allowed),
            "{krate} depends on {:?}; it may depend on {allowed:?} only",
            deps.difference(&allowed).collect::<Vec<_>>()
        );
    };
    expect("catalog", &[]);
    expect("connectors", &["tarn-catalog"]);
    expect("engine", &["tarn-catalog", "tarn-connectors"]);
    // The clients know the service by its HTTP API only.
    expect("cli", &["tarn-catalog", "tarn-engine"]);
    expect(
        "service",
        &["tarn-catalog", "tarn-connectors", "tarn-engine", "tarn-cli"],
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Which top-level modules of the crate at `src` each top-level module names (`crate::x`), not
/// counting itself. Names `lib.rs` re-exports (`pub use app::Application`) count as their module.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut modules = BTreeSet::new();
    let mut reexports = BTreeMap::new();
    for line in lib.lines().map(str::trim) {
        if let Some(m) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
        {
            modules.insert(m.trim_end_matches(';').to_string());
        }
        if let Some(rest) = line.strip_prefix("pub use ")
            && let Some((module, names)) = rest.split_once("::")
        {
            for name in names.trim_matches(|c| "{};".contains(c)).split(',') {
                reexports.insert(name.trim().to_string(), module.to_string());
            }
        }
    }
    let mut files = Vec::new();
    sources(src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if !modules.contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // Test modules may reach across layers (a test of a location may build a registry).
        let text = text.split("#[cfg(test)]").next().unwrap();
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut named = BTreeSet::new();
        // `crate::x`, and the names inside `use crate::{x, y::z}`.
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            let heads: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap()
                    .split(',')
                    .map(|p| p.trim().split("::").next().unwrap())
                    .collect(),
                None => vec![
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap(),
                ],
            };
            for head in heads {
                let target = reexports.get(head).map(String::as_str).unwrap_or(head);
                if modules.contains(target) && target != module {
                    named.insert(target.to_string());
                }
            }
        }
        graph.entry(module).or_default().extend(named);
    }
    graph
}

/// A circle in `graph`, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut c = path[at..].to_vec();
            c.push(node.to_string());
            return Some(c);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle_between_its_modules() {
    for krate in ["catalog", "connectors", "engine", "service", "cli"] {
        let graph = module_graph(&root().join(krate).join("src"));
        assert!(graph.len() > 1, "{krate}: modules not found");
        if let Some(c) = circle(&graph) {
            panic!(
                "{krate}: modules import each other in a circle: {}",
                c.join(" -> ")
            );
        }
    }
    // The engine's store is its bottom layer: it names nothing of the query side.
    let engine = module_graph(&root().join("engine").join("src"));
    assert!(!engine["store"].contains("query"), "{engine:?}");
}

#[test]
fn the_circle_check_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let mut acyclic = graph.clone();
    acyclic.get_mut("c").unwrap().clear();
    assert_eq!(circle(&acyclic), None);
}
