//! Shared fixtures for the integration tests in `tests/tests/`: build a pack
//! directory from components compiled out of this workspace, with a policy,
//! and run events through it with the real host.

pub mod ai_server;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil::audit::Auditor;
use vigil::finding::FindingRecord;
use vigil::load::pack::{Generation, LoadErrors, PackSource};
use vigil::load::policy::Policy;
use vigil::load::runtime::Runtime;
use vigil::pipeline::dispatch::RunStats;
use vigil::pipeline::input::BatchReader;

/// A pack written to a temporary directory, with its own state directory.
pub struct TestPack {
    /// Holds the pack and the state dir; removed on drop.
    pub dir: tempfile::TempDir,
    /// The pack directory.
    pub pack_dir: PathBuf,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// One plugin entry of a test pack.
pub struct PluginSpec<'a> {
    /// Plugin id.
    pub id: &'a str,
    /// Workspace crate the component is built from (e.g. `hostile`).
    pub crate_name: &'a str,
    /// Requested capabilities, as a TOML array body (`"log", "state"`).
    pub capabilities: &'a str,
    /// Config table body, TOML inline (`mode = "loop"`).
    pub config: &'a str,
}

/// Path of a built component: a test plugin (`tests/plugins/*`, built by
/// `vigil-test-artifacts`) or a shipped one (`plugins/*`, by `host/build.rs`).
pub fn component(crate_name: &str) -> &'static str {
    vigil_test_artifacts::component_path(crate_name)
        .or_else(|| vigil::artifacts::component_path(crate_name))
        .unwrap_or_else(|| {
            panic!("no component built for `{crate_name}`: is it under plugins/ or tests/plugins/?")
        })
}

impl TestPack {
    /// Write `pack.toml` (pack name `t`, every plugin a detector) and copy
    /// the components.
    pub fn new(plugins: &[PluginSpec<'_>]) -> Self {
        let worlds: Vec<_> = plugins.iter().map(|p| (p, "detector")).collect();
        Self::with_worlds(&worlds)
    }

    /// [`TestPack::new`] with each plugin's world given.
    pub fn with_worlds(plugins: &[(&PluginSpec<'_>, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let pack_dir = dir.path().join("pack");
        let state_dir = dir.path().join("state");
        std::fs::create_dir_all(&pack_dir).expect("pack dir");
        let mut manifest = String::from("name = \"t\"\nversion = \"1.0.0\"\n");
        for (p, world) in plugins {
            let file = format!("{}.wasm", p.crate_name.replace('-', "_"));
            std::fs::copy(component(p.crate_name), pack_dir.join(&file)).expect("copy component");
            manifest.push_str(&format!(
                "\n[[plugins]]\nid = \"{}\"\ncomponent = \"{file}\"\nworld = \"{world}\"\ncapabilities = [{}]\nconfig = {{ {} }}\n",
                p.id, p.capabilities, p.config
            ));
        }
        std::fs::write(pack_dir.join("pack.toml"), manifest).expect("write pack.toml");
        TestPack {
            dir,
            pack_dir,
            state_dir,
        }
    }

    /// A runtime for this pack under `policy` (TOML text).
    pub fn runtime(&self, policy: &str) -> Runtime {
        let policy = Policy::parse("test-policy.toml", policy).expect("valid test policy");
        Runtime::new(policy, &self.state_dir).expect("engine")
    }

    /// Load the pack under `policy`.
    pub fn load(&self, policy: &str) -> Result<(Runtime, Arc<Generation>), LoadErrors> {
        let runtime = self.runtime(policy);
        let generation = runtime.load(PackSource::Dir(self.pack_dir.clone()))?;
        Ok((runtime, generation))
    }

    /// The pack directory.
    pub fn path(&self) -> &Path {
        &self.pack_dir
    }

    /// Load under `policy` and run `jsonl` in batches of 4 with the audit
    /// log in `audit_dir` (opened, pack load recorded, closed); returns
    /// what was written to the output.
    pub fn audited_run(&self, policy: &str, audit_dir: &Path, jsonl: &str) -> Vec<u8> {
        let (runtime, generation) = self.load(policy).expect("pack loads");
        let mut auditor = Auditor::open(&runtime.policy.audit, audit_dir).expect("audit opens");
        vigil::pipeline::record::pack_load(&mut auditor, &generation).expect("recorded");
        let mut out = Vec::new();
        vigil::pipeline::dispatch::run_audited(
            &generation,
            BatchReader::new(jsonl.as_bytes()),
            "test.jsonl",
            4,
            &mut out,
            Some(&mut auditor),
        )
        .expect("run");
        auditor.close("test done").expect("closes");
        out
    }
}

/// The findings of a run's output (JSON Lines).
pub fn parse_findings(out: &[u8]) -> Vec<FindingRecord> {
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("findings are valid JSON"))
        .collect()
}

/// `n` small JSON events, one per line.
pub fn events(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"n\":{i},\"Event\":{{\"EventData\":{{\"Image\":\"x.exe\"}}}}}}\n"))
        .collect()
}

/// Run `jsonl` through `generation` in batches of `batch_size`; returns the
/// stats and the findings written.
pub fn run(
    generation: &Arc<Generation>,
    jsonl: &str,
    batch_size: usize,
) -> (RunStats, Vec<FindingRecord>) {
    let mut out = Vec::new();
    let stats = vigil::pipeline::dispatch::run(
        generation,
        jsonl.as_bytes(),
        "test.jsonl",
        batch_size,
        &mut out,
    )
    .expect("in-memory run");
    (stats, parse_findings(&out))
}

/// The value of evidence `key` of a finding.
pub fn evidence<'a>(finding: &'a FindingRecord, key: &str) -> Option<&'a str> {
    finding
        .evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}
