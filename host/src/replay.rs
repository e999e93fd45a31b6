//! `vigil replay`: re-run recorded invocations from the audit log alone.
//!
//! For each selected invocation the component is taken from the audit
//! directory's `components/` store (checked against its digest), the grant
//! set and config from the pack-load record, the events from the batch
//! record, the random seed and every host-call result from the invocation
//! record. The plugin runs in a fresh sandbox whose capabilities answer
//! from the record instead of the host (no state is read or written, no
//! clock is read). The replay is identical when the plugin makes the same
//! host calls with the same arguments and returns the same findings.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use wasmtime::Engine;

use crate::audit::query::{self, Entry};
use crate::audit::record::{
    BatchRecord, InitRecord, InvocationRecord, Lifecycle, Outcome, PluginLoad, Record,
};
use crate::capability::tape::Tape;
use crate::capability::{Setup, SetupMode};
use crate::finding::{EnrichmentResult, FindingRecord};
use crate::load::engine::{ComponentCache, sha256_hex};
use crate::load::manifest::World;
use crate::load::pack::link_plugin;
use crate::load::preinit::{InitMode, InitRun};
use crate::pipeline::record::outcome_of;
use crate::run::plugin::{Detect, Enrich, LoadedPlugin};
use crate::run::sandbox::{CallTemplate, SharedGrants};
use vigil_event::Batch;

/// Which invocations to replay.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only this invocation record.
    pub record: Option<u64>,
    /// Only invocations of this plugin id.
    pub plugin: Option<String>,
    /// Only invocations written at or after this time.
    pub since: Option<SystemTime>,
}

/// The verdict for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same host calls, same outcome, same findings.
    Identical,
    /// The first difference.
    Mismatch(String),
    /// The record does not hold what a replay needs.
    NotReplayable(String),
}

/// One replayed invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Sequence number of the invocation record.
    pub record: u64,
    /// `pack/plugin`.
    pub plugin: String,
    /// Findings recorded.
    pub findings: usize,
    /// Host calls recorded.
    pub host_calls: usize,
    /// The verdict.
    pub verdict: Verdict,
}

/// Replay the invocations of the log in `dir` picked by `selection`.
pub fn replay(
    engine: &Engine,
    dir: &Path,
    selection: &Selection,
) -> std::io::Result<Vec<Replayed>> {
    let scratch = tempfile::tempdir()?;
    let mut loads: HashMap<PluginKey, PluginLoad> = HashMap::new();
    let mut plugins: HashMap<PluginKey, Result<Arc<LoadedPlugin>, Verdict>> = HashMap::new();
    let mut batch: Option<(u64, BatchRecord)> = None;
    let mut out = Vec::new();
    query::for_each(dir, |entry: Entry, _| match entry.record {
        Record::Lifecycle(Lifecycle::PackLoad {
            pack,
            plugins: list,
            ..
        }) => {
            for p in list {
                loads.insert((pack.clone(), p.id.clone(), p.grants.clone()), p);
            }
        }
        Record::Batch(b) => batch = Some((entry.seq, b)),
        Record::Enrichment(inv) => {
            if !selection.wants(entry.seq, &entry.time, &inv) {
                return;
            }
            let verdict = (|| {
                let plugin = plugin_for(&mut plugins, &loads, engine, dir, scratch.path(), &inv)?;
                let input = (inv.input.as_ref()).ok_or_else(|| {
                    Verdict::NotReplayable("the enrichment record holds no input finding".into())
                })?;
                Ok(compare_enrichment(&plugin, &inv, input))
            })()
            .unwrap_or_else(|verdict| verdict);
            out.push(Replayed {
                record: entry.seq,
                plugin: format!("{}/{}", inv.pack, inv.plugin),
                findings: 0,
                host_calls: inv.host_calls.len(),
                verdict,
            });
        }
        Record::Invocation(inv) => {
            if !selection.wants(entry.seq, &entry.time, &inv) {
                return;
            }
            let verdict = (|| {
                let not_replayable = |why: &str| Verdict::NotReplayable(why.to_owned());
                let plugin = plugin_for(&mut plugins, &loads, engine, dir, scratch.path(), &inv)?;
                let (seq, b) = batch
                    .as_ref()
                    .filter(|(seq, _)| *seq == inv.batch)
                    .ok_or_else(|| not_replayable("its batch record is not right before it"))?;
                let events = events_of(b)
                    .map_err(|why| Verdict::NotReplayable(format!("batch #{seq}: {why}")))?;
                Ok(compare(&plugin, &inv, &b.source, &events))
            })()
            .unwrap_or_else(|verdict| verdict);
            out.push(Replayed {
                record: entry.seq,
                plugin: format!("{}/{}", inv.pack, inv.plugin),
                findings: inv.findings.len(),
                host_calls: inv.host_calls.len(),
                verdict,
            });
        }
        _ => {}
    })?;
    Ok(out)
}

impl Selection {
    fn wants(&self, seq: u64, time: &str, inv: &InvocationRecord) -> bool {
        self.record.is_none_or(|r| r == seq)
            && self.plugin.as_ref().is_none_or(|p| *p == inv.plugin)
            && self
                .since
                .is_none_or(|since| humantime::parse_rfc3339_weak(time).is_ok_and(|t| t >= since))
    }
}

type PluginKey = (String, String, String);

/// The plugin that made `inv`, rebuilt once per component, grant set and
/// load-time `init`.
fn plugin_for(
    plugins: &mut HashMap<PluginKey, Result<Arc<LoadedPlugin>, Verdict>>,
    loads: &HashMap<PluginKey, PluginLoad>,
    engine: &Engine,
    dir: &Path,
    scratch: &Path,
    inv: &InvocationRecord,
) -> Result<Arc<LoadedPlugin>, Verdict> {
    let load = loads
        .get(&(inv.pack.clone(), inv.plugin.clone(), inv.grants.clone()))
        .ok_or_else(|| {
            Verdict::NotReplayable("no pack-load record holds this plugin's grant set".into())
        })?;
    // A reload can keep component and grants and still snapshot different
    // data (an intel file changed): what `init` read is part of the key.
    let init = serde_json::to_vec(&load.init).unwrap_or_default();
    let key = (inv.component.clone(), inv.grants.clone(), sha256_hex(&init));
    plugins
        .entry(key)
        .or_insert_with(|| build_plugin(engine, dir, scratch, inv, load))
        .clone()
}

/// A plugin rebuilt from its stored component and recorded grant set.
fn build_plugin(
    engine: &Engine,
    dir: &Path,
    scratch: &Path,
    inv: &InvocationRecord,
    load: &PluginLoad,
) -> Result<Arc<LoadedPlugin>, Verdict> {
    let path = dir
        .join("components")
        .join(format!("{}.wasm", inv.component));
    let bytes = std::fs::read(&path).map_err(|e| {
        Verdict::NotReplayable(format!(
            "component {} is not in the store: {e}",
            path.display()
        ))
    })?;
    // An altered plugin is a mismatch, not a gap in the record: what runs
    // now is not what ran then.
    if sha256_hex(&bytes) != inv.component {
        return Err(Verdict::Mismatch(format!(
            "the plugin was altered: {} no longer hashes to the recorded component digest",
            path.display()
        )));
    }
    build_from_bytes(engine, dir, scratch, inv, load, &bytes)
}

fn build_from_bytes(
    engine: &Engine,
    dir: &Path,
    scratch: &Path,
    inv: &InvocationRecord,
    load: &PluginLoad,
    bytes: &[u8],
) -> Result<Arc<LoadedPlugin>, Verdict> {
    let not_replayable = |why: String| Verdict::NotReplayable(why);
    let component = ComponentCache::disabled()
        .load(engine, bytes)
        .map_err(|e| not_replayable(format!("component does not compile: {e:#}")))?;
    let grants = &load.grant_set;
    let world = match load.world {
        World::Enricher | World::Detector => load.world,
        World::Responder => {
            return Err(not_replayable(
                "a responder plugin cannot be replayed".into(),
            ));
        }
    };
    let limits = crate::load::policy::Limits::from(grants.limits);
    // The same resolution as at load, from the same recorded scopes, in
    // replay mode: the tape answers every host call, so no real state,
    // secret or pack file is touched (`capability/registry.rs`).
    let setup = Setup {
        pack: &inv.pack,
        plugin: &inv.plugin,
        config: &grants.config,
        log_records_per_call: limits.log_records_per_call,
        deadline: limits.deadline,
        clock_origin: Instant::now(),
        mode: SetupMode::Replay {
            scratch,
            file_store: crate::audit::files_store(dir),
        },
    };
    let (shared, _) = SharedGrants::resolve(&grants.effective, &grants.scopes, &setup)
        .map_err(|e| not_replayable(format!("{} grant: {}", e.capability, e.message)))?;
    let template = CallTemplate {
        memory_bytes: limits.memory_bytes as usize,
        config: Arc::new(grants.config.clone()),
        grants: shared,
        // Replay answers from the record, revoked calls included.
        revocations: None,
    };
    // A plugin snapshotted at load is snapshotted again, its `init`'s host
    // calls answered from the pack-load record; one that ran `init` per
    // instance (or a log from before pre-initialisation) runs it per call.
    let (component, init) = match &load.init {
        Some(InitRecord {
            mode: recorded @ InitMode::Snapshot { .. },
            host_calls,
        }) => {
            let run = InitRun {
                engine,
                cache: &ComponentCache::disabled(),
                bytes,
                world,
                effective: &grants.effective,
                template: &template,
                deadline: limits.deadline,
            };
            let again = run.preinitialise(component, Tape::replay(host_calls.clone(), 0));
            if let Some(divergence) = again.divergence {
                return Err(Verdict::Mismatch(format!("`init` at load: {divergence}")));
            }
            if again.mode != *recorded {
                return Err(Verdict::Mismatch(format!(
                    "`init` at load: recorded {recorded:?}, replayed {:?}",
                    again.mode
                )));
            }
            (again.component, again.mode)
        }
        _ => (
            component,
            InitMode::PerInstance {
                why: "recorded so".into(),
            },
        ),
    };
    let pre = link_plugin(engine, &component, &grants.effective, world)
        .map_err(|e| not_replayable(format!("component does not link: {e:#}")))?;
    Ok(Arc::new(LoadedPlugin {
        pack: Arc::from(inv.pack.as_str()),
        pack_version: Arc::from(inv.version.as_str()),
        generation: inv.generation,
        id: Arc::from(inv.plugin.as_str()),
        digest: inv.component.clone(),
        grants_digest: inv.grants.clone(),
        effective: grants.effective.clone(),
        limits,
        engine: engine.clone(),
        pre,
        template,
        init,
        // Replay answers from the record: nothing is revoked.
        per_instance: None,
        health: Mutex::default(),
        projection: Mutex::default(),
    }))
}

/// The batch as the plugin saw it, re-encoded from the recorded events.
fn events_of(batch: &BatchRecord) -> Result<Batch, String> {
    let mut out = Batch::new();
    for e in &batch.events {
        if e.redacted {
            return Err(format!("event {} was recorded redacted", e.id));
        }
        let Some(value) = &e.event else {
            return Err("events were recorded as digests only (`inputs = \"digest\"`)".into());
        };
        let json = serde_json::to_vec(value).map_err(|err| err.to_string())?;
        out.push_json(e.id, &json)
            .map_err(|err| format!("event {}: {err}", e.id))?;
    }
    Ok(out)
}

fn compare(plugin: &LoadedPlugin, inv: &InvocationRecord, source: &str, batch: &Batch) -> Verdict {
    let Some(seed) = decode_seed(&inv.random_seed) else {
        return Verdict::NotReplayable("the random seed is not 64 hex digits".into());
    };
    let tape = Tape::replay(inv.host_calls.clone(), inv.host_calls_refused);
    let (result, divergence) = plugin.replay::<Detect>(batch, tape, seed);
    if let Some(d) = divergence {
        return Verdict::Mismatch(d);
    }
    let findings = match result {
        Err(e) if inv.outcome != Outcome::Ok && outcome_of(&e) == inv.outcome => {
            return Verdict::Identical;
        }
        Err(e) => {
            return Verdict::Mismatch(format!(
                "outcome: recorded {:?}, replay failed: {e}",
                inv.outcome
            ));
        }
        Ok(_) if inv.outcome != Outcome::Ok => {
            return Verdict::Mismatch(format!("outcome: recorded {:?}, replay ok", inv.outcome));
        }
        Ok(findings) => findings,
    };
    let replayed: Vec<FindingRecord> = findings
        .into_iter()
        .map(|f| FindingRecord::new(&plugin.pack, &plugin.id, source, f))
        .collect();
    for (i, (recorded, again)) in inv.findings.iter().zip(&replayed).enumerate() {
        if recorded != again {
            return Verdict::Mismatch(format!(
                "finding #{}: recorded {}, replay {}",
                i + 1,
                serde_json::to_string(recorded).unwrap_or_default(),
                serde_json::to_string(again).unwrap_or_default()
            ));
        }
    }
    if inv.findings.len() != replayed.len() {
        return Verdict::Mismatch(format!(
            "findings: recorded {}, replay {}",
            inv.findings.len(),
            replayed.len()
        ));
    }
    Verdict::Identical
}

fn compare_enrichment(
    plugin: &LoadedPlugin,
    inv: &InvocationRecord,
    input: &FindingRecord,
) -> Verdict {
    let Some(seed) = decode_seed(&inv.random_seed) else {
        return Verdict::NotReplayable("the random seed is not 64 hex digits".into());
    };
    let tape = Tape::replay(inv.host_calls.clone(), inv.host_calls_refused);
    let (result, divergence) = plugin.replay::<Enrich>(&input.to_wit(), tape, seed);
    if let Some(d) = divergence {
        return Verdict::Mismatch(d);
    }
    match result {
        Err(e) if inv.outcome != Outcome::Ok && outcome_of(&e) == inv.outcome => Verdict::Identical,
        Err(e) => Verdict::Mismatch(format!(
            "outcome: recorded {:?}, replay failed: {e}",
            inv.outcome
        )),
        Ok(_) if inv.outcome != Outcome::Ok => {
            Verdict::Mismatch(format!("outcome: recorded {:?}, replay ok", inv.outcome))
        }
        Ok(enrichment) => {
            let again = EnrichmentResult::enriched(enrichment);
            if inv.enrichment.as_ref() == Some(&again) {
                Verdict::Identical
            } else {
                Verdict::Mismatch(format!(
                    "enrichment: recorded {}, replay {}",
                    serde_json::to_string(&inv.enrichment).unwrap_or_default(),
                    serde_json::to_string(&again).unwrap_or_default()
                ))
            }
        }
    }
}

fn decode_seed(hex: &str) -> Option<[u8; 32]> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex, &mut seed).ok()?;
    Some(seed)
}
