//! The library's layering, checked on its source: no import cycles among
//! modules, the audit log is a sink (it consumes records, it does not know
//! packs, plugins, inputs or the policy, and nothing it consumes from
//! imports it), and capabilities are self-contained units below the call
//! path.
//!
//! A module's imports are the `crate::…` and `super::…` paths in its code
//! (comments and its `tests` module left out), resolved to the longest
//! module they name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`audit::record`) → source file.
fn modules() -> BTreeMap<String, PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("reads src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path
                .strip_prefix(&root)
                .expect("under src")
                .with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a module: no comment lines, no `tests` module.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("reads module");
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    (text.lines())
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The path segments after each occurrence of `prefix` in `code`.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segments: Vec<&str> = rest[..end].split("::").filter(|s| !s.is_empty()).collect();
        out.push(segments);
    }
    out
}

/// Module → the other modules it imports.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let modules = modules();
    let resolve = |segments: &[&str]| {
        (1..=segments.len())
            .rev()
            .map(|k| segments[..k].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (name, path) in &modules {
        let code = code(path);
        // `super` of `a::b` is `a`, whether it is `a/b.rs` or `a/b/mod.rs`.
        let mut parent: Vec<&str> = name.split("::").collect();
        parent.pop();
        let mut deps = BTreeSet::new();
        for segments in paths_after(&code, "crate::") {
            deps.extend(resolve(&segments));
        }
        for segments in paths_after(&code, "super::") {
            let full: Vec<&str> = parent.iter().copied().chain(segments).collect();
            deps.extend(resolve(&full));
        }
        deps.remove(name);
        // A parent declaring its children is not an import.
        deps.retain(|d| !d.starts_with(&format!("{name}::")));
        graph.insert(name.clone(), deps);
    }
    graph
}

/// Every module that imports one matching `target`.
fn importers_of(
    graph: &BTreeMap<String, BTreeSet<String>>,
    target: impl Fn(&str) -> bool,
) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    for (from, deps) in graph {
        for dep in deps.iter().filter(|d| target(d)) {
            out.push((from.as_str(), dep.as_str()));
        }
    }
    out
}

fn in_module(name: &str, module: &str) -> bool {
    name == module || name.starts_with(&format!("{module}::"))
}

#[test]
fn the_module_graph_is_read_from_the_source() {
    let graph = imports();
    // A sanity check on the reader itself, so the tests below cannot pass
    // on an empty graph.
    assert!(graph.len() > 40, "{} modules", graph.len());
    assert!(graph["run::sandbox"].contains("capability::registry"));
    assert!(graph["pipeline::dispatch"].contains("audit"));
    assert!(
        graph["audit::writer"].contains("audit::segments"),
        "super:: paths resolve"
    );
}

#[test]
fn no_module_imports_itself_through_others() {
    let graph = imports();
    // Depth-first search for a back edge.
    fn visit<'g>(
        node: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'g str, bool>,
        stack: &mut Vec<&'g str>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let at = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(node, false);
        stack.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node, true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(node, &graph, &mut state, &mut stack) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_audit_log_consumes_records_and_knows_no_packs_plugins_inputs_or_policy() {
    let graph = imports();
    let forbidden = [
        "load::pack",
        "load::policy",
        "run::plugin",
        "pipeline::input",
    ];
    let bad: Vec<_> = importers_of(&graph, |d| forbidden.iter().any(|f| in_module(d, f)))
        .into_iter()
        .filter(|(from, _)| in_module(from, "audit"))
        .collect();
    assert!(bad.is_empty(), "the audit log imports {bad:?}");
    // What the audit log consumes from does not import it back. (The
    // policy does: it is the operator's configuration of every part, the
    // log's `[audit]` section included, which `audit::config` defines.)
    let below = [
        "capability",
        "run",
        "load",
        "finding",
        "state::store",
        "state::stores",
    ];
    let bad: Vec<_> = importers_of(&graph, |d| in_module(d, "audit"))
        .into_iter()
        .filter(|(from, dep)| {
            below.iter().any(|b| in_module(from, b))
                && !(*from == "load::policy" && *dep == "audit::config")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "imports of the audit log from below it: {bad:?}"
    );
}

#[test]
fn capabilities_do_not_reach_into_loading_running_or_the_pipeline() {
    let graph = imports();
    let above = [
        "load",
        "run",
        "pipeline",
        "audit",
        "host",
        "revocation",
        "replay",
    ];
    let bad: Vec<_> = importers_of(&graph, |d| above.iter().any(|a| in_module(d, a)))
        .into_iter()
        .filter(|(from, _)| in_module(from, "capability"))
        .collect();
    assert!(bad.is_empty(), "capabilities import {bad:?}");
}
