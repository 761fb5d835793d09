//! The modules of each crate and what they import, read from the source: a test here keeps the
//! top-level modules of every crate free of import cycles (a module that uses another that uses
//! it back is one concern split in two, or two concerns tangled). Each file under a directory
//! module counts as that module; `crate::a`, `crate::{a, b::c}` and `super::a` in a crate's root
//! file are what a module uses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's top-level modules and, for each, the other top-level modules it uses.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose sources are in `src` (lib.rs or main.rs and the modules).
pub fn graph(src: &Path) -> std::io::Result<Graph> {
    let mut graph = Graph::new();
    for (module, file) in files(src)? {
        let text = std::fs::read_to_string(&file)?;
        let used = graph.entry(module.clone()).or_default();
        for name in uses(&text) {
            if name != module {
                used.insert(name);
            }
        }
    }
    // Only the crate's own modules: `crate::` paths to items of the root (lib.rs) are not edges.
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for used in graph.values_mut() {
        used.retain(|m| modules.contains(m));
    }
    Ok(graph)
}

/// Every source file of the crate in `src` but its root, with its top-level module's name.
fn files(src: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(src)? {
        let path = entry?.path();
        let name = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if path.is_dir() {
            for file in rust_files(&path)? {
                out.push((name.clone(), file));
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main" {
            out.push((name, path));
        }
    }
    Ok(out)
}

fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// The top-level modules `text` names after `crate::` (outside comments), braces included.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                found.extend(group_heads(group));
            } else {
                found.insert(ident(after).to_string());
            }
            rest = after;
        }
    }
    found.retain(|n| !n.is_empty());
    found
}

/// The first name of each path in a `{a, b::c, d::{e, f}}` group (`group` starts after `{`).
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start && depth == 0 => {
                heads.push(ident(&group[i..]).to_string());
                at_item_start = false;
            }
            _ => {}
        }
    }
    heads
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The crates of the workspace, by their directory.
pub const CRATES: [&str; 3] = ["installer", "vmtests", "xtask"];

/// `cargo xtask modules`: each crate's top-level modules with what they use; an error naming
/// each import cycle.
pub fn print_and_check(root: &Path) -> anyhow::Result<()> {
    let mut found = Vec::new();
    for krate in CRATES {
        let g = graph(&root.join(krate).join("src"))?;
        println!("{krate}:");
        for (module, used) in &g {
            let used: Vec<&str> = used.iter().map(String::as_str).collect();
            println!("  {module} -> {}", used.join(" "));
        }
        found.extend(
            cycles(&g)
                .into_iter()
                .map(|c| format!("{krate}: {}", c.join(" -> "))),
        );
    }
    anyhow::ensure!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
    println!("no import cycles");
    Ok(())
}

/// The cycles in `graph`, each as the modules around it (first repeated at the end); one per
/// strongly connected set of modules.
pub fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut cycles = Vec::new();
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if reported.contains(start) {
            continue;
        }
        if let Some(path) = path_back(graph, start) {
            reported.extend(path.iter().cloned());
            cycles.push(path);
        }
    }
    cycles
}

/// A path from `start` through its uses back to `start`, if there is one (breadth first, so
/// the shortest).
fn path_back(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(m) = queue.pop_front() {
        for next in graph.get(m).into_iter().flatten() {
            if next == start {
                let mut path = vec![start.to_string()];
                let mut at = m;
                let mut back = vec![m.to_string()];
                while at != start {
                    at = came_from[at];
                    back.push(at.to_string());
                }
                back.pop();
                back.reverse();
                path.extend(back);
                path.push(start.to_string());
                return Some(path);
            }
            if !came_from.contains_key(next.as_str()) && next != start {
                came_from.insert(next, m);
                queue.push_back(next);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_are_read_from_paths_and_groups_not_comments() {
        let text = "use crate::config::{Config, Layout};\n\
                    use crate::{plan::Plan, zbm::{image, release}, hash};\n\
                    // crate::doctor is only mentioned\n\
                    let x = crate::exec::run(crate::disk::naming::f());\n";
        let found: Vec<String> = uses(text).into_iter().collect();
        assert_eq!(found, ["config", "disk", "exec", "hash", "plan", "zbm"]);
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let g: Graph = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec!["a"]),
        ]
        .into_iter()
        .map(|(m, u)| (m.to_string(), u.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(cycles(&g), [["a", "b", "c", "a"]]);
        let mut acyclic = g.clone();
        acyclic.get_mut("c").unwrap().clear();
        assert!(cycles(&acyclic).is_empty());
    }

    /// No crate of the workspace has a cycle among its top-level modules.
    #[test]
    fn no_crate_has_an_import_cycle() {
        let root = crate::project_root();
        for krate in CRATES {
            let g = graph(&root.join(krate).join("src")).unwrap();
            assert!(g.len() > 3, "{krate}: {g:?}");
            let found = cycles(&g);
            assert!(found.is_empty(), "{krate}: import cycles {found:?}");
        }
    }
}
