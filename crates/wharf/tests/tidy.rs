//! Tidy (rust-analyzer's `xtask/src/tidy.rs` in spirit): checks over the source tree that keep
//! the structure the code relies on true, so a change that breaks one fails here with the file
//! to fix rather than in review.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn crates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_cli_names_no_store_it_goes_through_wharf_ops() {
    let src = root().join("crates/wharf/src");
    let offenders: Vec<String> = rust_files(&src)
        .into_iter()
        .filter(|file| read(file).contains("wharf_store"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "the CLI must not open the state itself (read through wharf_ops::read, write through \
         the API or a wharf-ops use case under control.lock): {offenders:?}"
    );
    let manifest = read(&root().join("crates/wharf/Cargo.toml"));
    let dependencies = manifest
        .split("[dev-dependencies]")
        .next()
        .unwrap_or_default();
    assert!(
        !dependencies.contains("wharf-store"),
        "crates/wharf must not depend on wharf-store (only its tests may)"
    );
}

#[test]
fn every_rust_file_starts_by_saying_what_it_is_for() {
    let missing: Vec<String> = crates()
        .iter()
        .flat_map(|dir| rust_files(dir))
        .filter(|file| !read(file).starts_with("//!"))
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` first line: {missing:?}"
    );
}

/// The modules of `crates/control/src` (a file or a folder each) and the ones each imports
/// through `crate::`.
fn control_module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = root().join("crates/control/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if module == "lib" {
            continue;
        }
        let text = read(&file);
        let targets = graph.entry(module.clone()).or_default();
        for (index, _) in text.match_indices("crate::") {
            let name: String = text[index + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != module {
                targets.insert(name);
            }
        }
    }
    graph
}

/// A cycle in `graph`, if there is one (depth-first search, white/grey/black).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(1) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn controls_modules_import_each_other_without_a_cycle() {
    let graph = control_module_graph();
    assert!(
        graph.contains_key("events") && graph.contains_key("control"),
        "{graph:?}"
    );
    assert_eq!(
        find_cycle(&graph),
        None,
        "import cycle among control's modules: {graph:?}"
    );
    // The checker itself finds a cycle when there is one.
    let mut looped = graph.clone();
    looped
        .entry("events".to_owned())
        .or_default()
        .insert("control".to_owned());
    assert!(find_cycle(&looped).is_some());
}

/// The calls looked for, spelled in two parts so this file does not match itself.
const SLEEP: &str = concat!("thread::", "sleep(");
const PARK: &str = concat!("park_", "timeout(");

#[test]
fn tests_never_synchronise_by_sleeping() {
    let mut offenders = Vec::new();
    for dir in crates() {
        let mut files = rust_files(&dir.join("tests"));
        // Unit tests inside sources too: only their `#[cfg(test)]` part.
        files.extend(rust_files(&dir.join("src")));
        for file in files {
            let text = read(&file);
            let in_tests_dir = file.components().any(|c| c.as_os_str() == "tests");
            let test_part = if in_tests_dir {
                text.as_str()
            } else {
                text.split("#[cfg(test)]").nth(1).unwrap_or_default()
            };
            let lines: Vec<&str> = test_part.lines().collect();
            for (number, line) in lines.iter().enumerate() {
                if !(line.contains(SLEEP) || line.contains(PARK)) {
                    continue;
                }
                // Allowed: the pause between two polls of a loop bounded by a deadline, and a
                // load generator's pacing, marked so. Anything else waits for something by
                // sleeping.
                let context = lines[number.saturating_sub(10)..number].join("\n");
                let polling = ["deadline", "until"].iter().any(|w| context.contains(w));
                let pacing = context.contains("tidy: pacing");
                if !polling && !pacing {
                    offenders.push(format!("{}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "sleeps used as synchronisation: {offenders:#?}"
    );
}
