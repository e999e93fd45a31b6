//! Data-driven cases: every directory under `tests/cases/` is one run of
//! the real host, described by files alone:
//!
//! - `pack.toml`: the pack; a `component = "NAME.wasm"` is the component
//!   this workspace builds from the crate `NAME` (`_` for `-`);
//! - `policy.toml`: the operator policy;
//! - `events.jsonl`: the input;
//! - `pack/` (optional): more files of the pack (intel lists, rules),
//!   copied beside `pack.toml` with symbolic links kept as links;
//! - `revocations.json` (optional): the state dir's revocation list;
//! - `expected.json`: either `{"load_error": "text"}` (the pack is refused
//!   with a reason containing it) or `{"findings": [{plugin, rule_id,
//!   event}], "denied": [{plugin, interface, function}]}`: the findings
//!   emitted (any order) and the host calls the audit log records as
//!   denied (detectors' and enrichers', and their `init`s' at load; any
//!   order); a denied entry may add
//!   `args` (the recorded arguments), and then every entry's are compared.
//!
//! Adding a case is adding a directory; a `*-denied` case proves a refusal
//! from the audit log, not only from the plugin's behaviour.

use std::path::Path;

use serde_json::Value;
use vigil::audit::query;
use vigil::audit::record::{CallStatus, HostCall, Lifecycle, Record};
use vigil::host::{Host, HostError, HostOptions};
use vigil::load::manifest::PackManifest;
use vigil::load::pack::PackSource;
use vigil::load::policy::Policy;
use vigil::pipeline::sink::Memory;
use vigil::pipeline::source::Lines;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/cases");

/// `(plugin, rule_id, event line)` or `(plugin, interface, function)`.
type Triple = (String, String, String);

fn triples(expected: &Value, key: &str, fields: [&str; 3]) -> Vec<Triple> {
    let field = |v: &Value, f: &str| match &v[f] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut list: Vec<Triple> = (expected[key].as_array().into_iter().flatten())
        .map(|v| {
            (
                field(v, fields[0]),
                field(v, fields[1]),
                field(v, fields[2]),
            )
        })
        .collect();
    list.sort();
    list
}

/// Run one case; `Err` says what differs.
fn run_case(case: &Path) -> Result<(), String> {
    let read =
        |name: &str| std::fs::read_to_string(case.join(name)).map_err(|e| format!("{name}: {e}"));
    let expected: Value =
        serde_json::from_str(&read("expected.json")?).map_err(|e| format!("expected.json: {e}"))?;
    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let pack_dir = work.path().join("pack");
    let state_dir = work.path().join("state");
    let audit_dir = work.path().join("audit");
    std::fs::create_dir_all(&pack_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&state_dir).map_err(|e| e.to_string())?;
    let manifest_text = read("pack.toml")?;
    std::fs::write(pack_dir.join("pack.toml"), &manifest_text).map_err(|e| e.to_string())?;
    let manifest = PackManifest::parse("pack.toml", &manifest_text).map_err(|e| e.to_string())?;
    for plugin in &manifest.plugins {
        let crate_name = (plugin.component.strip_suffix(".wasm"))
            .ok_or_else(|| format!("component `{}` is not NAME.wasm", plugin.component))?
            .replace('_', "-");
        let built = vigil_test_artifacts::component_path(&crate_name)
            .or_else(|| vigil::artifacts::component_path(&crate_name))
            .ok_or_else(|| format!("no component built from crate `{crate_name}`"))?;
        std::fs::copy(built, pack_dir.join(&plugin.component)).map_err(|e| e.to_string())?;
    }
    if case.join("pack").is_dir() {
        copy_tree(&case.join("pack"), &pack_dir).map_err(|e| format!("pack/: {e}"))?;
    }
    if case.join("revocations.json").exists() {
        std::fs::copy(
            case.join("revocations.json"),
            state_dir.join(vigil::revocation::FILE),
        )
        .map_err(|e| e.to_string())?;
    }
    let policy = Policy::parse("policy.toml", &read("policy.toml")?).map_err(|e| e.to_string())?;
    let options = HostOptions {
        policy,
        state_dir,
        audit_dir: Some(audit_dir.clone()),
        command: "case".into(),
    };
    let host = Host::open(options, &[PackSource::Dir(pack_dir)]);
    if let Some(text) = expected["load_error"].as_str() {
        return match host {
            Err(HostError::PackRefused(errors)) if errors.to_string().contains(text) => Ok(()),
            Err(e) => Err(format!("refused, but not for `{text}`: {e}")),
            Ok(_) => Err(format!("loaded; expected a refusal naming `{text}`")),
        };
    }
    let mut host = host.map_err(|e| format!("host: {e}"))?;
    let events = read("events.jsonl")?;
    let mut sink = Memory::default();
    let mut source = Lines::new("events.jsonl", events.as_bytes());
    (host.run(&mut source, &mut sink, None, 256)).map_err(|e| format!("run: {e}"))?;
    host.close("case done").map_err(|e| e.to_string())?;

    let mut found: Vec<Triple> = (sink.findings.iter())
        .map(|f| {
            (
                f.plugin.clone(),
                f.rule_id.clone(),
                f.event.line.to_string(),
            )
        })
        .collect();
    found.sort();
    let with_args =
        (expected["denied"].as_array().into_iter().flatten()).any(|d| d.get("args").is_some());
    let mut denied: Vec<Triple> = Vec::new();
    query::for_each(&audit_dir, |entry, _| {
        // Calls of every invocation, and of each plugin's `init` at load.
        let calls: Vec<(String, HostCall)> = match entry.record {
            Record::Invocation(inv) | Record::Enrichment(inv) => {
                let plugin = inv.plugin;
                (inv.host_calls.into_iter())
                    .map(|c| (plugin.clone(), c))
                    .collect()
            }
            Record::Lifecycle(Lifecycle::PackLoad { plugins, .. }) => (plugins.into_iter())
                .flat_map(|p| {
                    let calls = p.init.map(|i| i.host_calls).unwrap_or_default();
                    calls.into_iter().map(move |c| (p.id.clone(), c))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (plugin, call) in calls {
            if call.status == CallStatus::Denied {
                let mut function = call.function;
                if with_args {
                    function = format!("{function} {}", call.args);
                }
                denied.push((plugin, call.interface, function));
            }
        }
    })
    .map_err(|e| format!("reading the audit log: {e}"))?;
    denied.sort();
    let mut problems = Vec::new();
    let want = triples(&expected, "findings", ["plugin", "rule_id", "event"]);
    if found != want {
        problems.push(format!("findings {found:?}, expected {want:?}"));
    }
    let mut want = triples(&expected, "denied", ["plugin", "interface", "function"]);
    if with_args {
        let args =
            (expected["denied"].as_array().into_iter().flatten()).map(|d| d["args"].to_string());
        let mut described: Vec<Triple> = (expected["denied"].as_array().into_iter().flatten())
            .zip(args)
            .map(|(d, args)| {
                let text = |f: &str| d[f].as_str().unwrap_or_default().to_owned();
                (
                    text("plugin"),
                    text("interface"),
                    format!("{} {args}", text("function")),
                )
            })
            .collect();
        described.sort();
        want = described;
    }
    if denied != want {
        problems.push(format!("denied host calls {denied:?}, expected {want:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn every_case_under_tests_cases_runs_as_its_files_say() {
    let mut cases: Vec<_> = (std::fs::read_dir(CASES).expect("tests/cases"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases
            .iter()
            .filter(|c| c.ends_with("echo-allowed") || c.to_string_lossy().ends_with("-denied"))
            .count()
            >= 5,
        "the allowed case and the denied cases are all there: {cases:?}"
    );
    let failures: Vec<String> = (cases.iter())
        .filter_map(|case| {
            let name = case
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            run_case(case).err().map(|why| format!("{name}: {why}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Copy `from` into `to`, keeping symbolic links as links (a case may hold
/// a link that leads out of a granted directory).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dest) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dest)?;
        } else if kind.is_dir() {
            copy_tree(&src, &dest)?;
        } else {
            std::fs::copy(&src, &dest)?;
        }
    }
    Ok(())
}
