//! ARCHITECTURE.md's module map is the code's: every module of `src/lib.rs` has a row, the
//! import graph it prints is the one `crate::` paths in the sources make, and that graph has no
//! cycles. A new import shows up here before it shows up as a tangle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn read(path: impl AsRef<Path>) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `pub mod NAME;` lines of src/lib.rs.
fn modules() -> Vec<String> {
    read("src/lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect()
}

fn sources(module: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let file = root.join(format!("{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let mut dirs = vec![root.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The modules each module names as `crate::MODULE`, comments left out.
fn imports(modules: &[String]) -> Graph {
    let known: BTreeSet<&str> = modules.iter().map(String::as_str).collect();
    modules
        .iter()
        .map(|module| {
            let mut used = BTreeSet::new();
            for file in sources(module) {
                let text = std::fs::read_to_string(&file).expect("source");
                for line in text.lines() {
                    let code = line.split("//").next().unwrap_or_default();
                    for (at, _) in code.match_indices("crate::") {
                        let name: String = code[at + "crate::".len()..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if known.contains(name.as_str()) && name != *module {
                            used.insert(name);
                        }
                    }
                }
            }
            (module.clone(), used)
        })
        .collect()
}

/// The graph ARCHITECTURE.md prints (`a -> b, c` lines in the block after "Imports between
/// modules"); modules without a line import nothing.
fn documented(modules: &[String]) -> Graph {
    let doc = read("ARCHITECTURE.md");
    let block = doc
        .split_once("Imports between modules")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .expect("ARCHITECTURE.md has the import block");
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let (from, to) = line.split_once(" -> ").expect("`a -> b, c` line");
        let deps = to.split(',').map(|d| d.trim().to_owned()).collect();
        graph.insert(from.trim().to_owned(), deps);
    }
    graph
}

#[test]
fn the_documented_import_graph_is_the_codes() {
    let modules = modules();
    let code = imports(&modules);
    let doc = documented(&modules);
    let lines = |g: &Graph| {
        g.iter()
            .filter(|(_, deps)| !deps.is_empty())
            .map(|(m, deps)| {
                format!(
                    "{m} -> {}",
                    deps.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        lines(&doc),
        lines(&code),
        "ARCHITECTURE.md's import block differs from the sources (left: doc, right: code)"
    );
}

#[test]
fn every_module_has_a_row_in_the_module_map() {
    let doc = read("ARCHITECTURE.md");
    let rows: BTreeSet<String> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| {
            cell.split(',')
                .map(|m| m.trim().trim_matches('`').to_owned())
        })
        .collect();
    let missing: Vec<String> = modules()
        .into_iter()
        .filter(|m| !rows.contains(m))
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a row in ARCHITECTURE.md: {missing:?}"
    );
}

#[test]
fn modules_import_each_other_without_cycles() {
    let graph = imports(&modules());
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit(m: &str, g: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_owned());
        for dep in g.get(m).into_iter().flatten() {
            visit(dep, g, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut vec![], &mut done);
    }
}
