//! The worlds a plugin can be called through, behind one trait.
//!
//! [`LoadedPlugin::call`] is the one call path of every world: a fresh
//! store and instance from the pre-linked component, `init` (unless the
//! instance starts from the load-time snapshot), the world's entry point,
//! output checks, recording and quarantine. A world supplies only what
//! differs: how to instantiate its bindings, how to call its `init`, and
//! how to invoke and check its entry point. Adding a world (responders) is
//! one more implementation of [`WorldCall`] and one more [`PluginPre`]
//! variant.

use vigil_event::{Batch, Projection};
use wasmtime::Store;

use super::{CallError, LoadedPlugin, PluginPre, plugin_error_text};
use crate::bindings::Detector;
use crate::bindings::enricher::Enricher;
use crate::bindings::vigil::plugin::types::{ConfigEntries, Enrichment, Finding, PluginError};
use crate::finding::{MAX_EVIDENCE_PER_FINDING, MAX_TECHNIQUES, emitted_bytes, enrichment_bytes};
use crate::load::manifest::World;
use crate::run::sandbox::CallState;

/// What `init` returns, world-independent: the event fields a detector
/// declared (`None`: whole events, and always for other worlds).
pub type Declared = Option<Vec<String>>;

/// One world's entry point.
pub trait WorldCall {
    /// What one call takes: a batch of events, a finding.
    type Input: ?Sized;
    /// What one call returns: findings, an enrichment.
    type Output;
    /// The world's generated bindings on an instance.
    type Instance;
    /// The world.
    const WORLD: World;

    /// Instantiate `pre` into `store`; `None` when `pre` was linked for
    /// another world.
    fn instantiate(
        pre: &PluginPre,
        store: &mut Store<CallState>,
    ) -> Option<wasmtime::Result<Self::Instance>>;

    /// The world's bindings on an already created instance (the snapshot
    /// run instantiates without a pre-linked component).
    fn bind(
        store: &mut Store<CallState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self::Instance>;

    /// Call the world's `init(config)`.
    fn init(
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        config: &ConfigEntries,
    ) -> wasmtime::Result<Result<Declared, PluginError>>;

    /// Call the entry point on `input` (projected onto `projection` when
    /// the plugin declared fields; `scratch` holds the projection) and
    /// check the output against the plugin's limits.
    fn invoke(
        plugin: &LoadedPlugin,
        instance: &Self::Instance,
        store: &mut Store<CallState>,
        projection: Option<&Projection>,
        input: &Self::Input,
        scratch: &mut Batch,
    ) -> Result<Self::Output, CallError>;
}

/// `detector`: a batch of events in, findings out.
pub struct Detect;

impl WorldCall for Detect {
    type Input = Batch;
    type Output = Vec<Finding>;
    type Instance = Detector;
    const WORLD: World = World::Detector;

    fn instantiate(
        pre: &PluginPre,
        store: &mut Store<CallState>,
    ) -> Option<wasmtime::Result<Detector>> {
        match pre {
            PluginPre::Detector(pre) => Some(pre.instantiate(store)),
            PluginPre::Enricher(_) => None,
        }
    }

    fn bind(
        store: &mut Store<CallState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Detector> {
        Detector::new(store, instance)
    }

    fn init(
        instance: &Detector,
        store: &mut Store<CallState>,
        config: &ConfigEntries,
    ) -> wasmtime::Result<Result<Declared, PluginError>> {
        Ok(instance.call_init(store, config)?.map(|info| info.fields))
    }

    fn invoke(
        plugin: &LoadedPlugin,
        instance: &Detector,
        store: &mut Store<CallState>,
        projection: Option<&Projection>,
        batch: &Batch,
        scratch: &mut Batch,
    ) -> Result<Vec<Finding>, CallError> {
        let input = match projection {
            None => batch,
            Some(projection) => {
                batch.project_into(projection, scratch);
                &*scratch
            }
        };
        let findings = instance
            .call_detect(&mut *store, input.wire_buffer())
            .map_err(|e| plugin.classify(store, e))?
            .map_err(|e| CallError::Plugin(plugin_error_text(&e)))?;
        check_findings(plugin, batch, findings)
    }
}

/// `enricher`: a finding in, added context out.
pub struct Enrich;

impl WorldCall for Enrich {
    type Input = Finding;
    type Output = Enrichment;
    type Instance = Enricher;
    const WORLD: World = World::Enricher;

    fn instantiate(
        pre: &PluginPre,
        store: &mut Store<CallState>,
    ) -> Option<wasmtime::Result<Enricher>> {
        match pre {
            PluginPre::Enricher(pre) => Some(pre.instantiate(store)),
            PluginPre::Detector(_) => None,
        }
    }

    fn bind(
        store: &mut Store<CallState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Enricher> {
        Enricher::new(store, instance)
    }

    fn init(
        instance: &Enricher,
        store: &mut Store<CallState>,
        config: &ConfigEntries,
    ) -> wasmtime::Result<Result<Declared, PluginError>> {
        Ok(instance.call_init(store, config)?.map(|()| None))
    }

    fn invoke(
        plugin: &LoadedPlugin,
        instance: &Enricher,
        store: &mut Store<CallState>,
        _projection: Option<&Projection>,
        finding: &Finding,
        _scratch: &mut Batch,
    ) -> Result<Enrichment, CallError> {
        let enrichment = instance
            .call_enrich(&mut *store, finding)
            .map_err(|e| plugin.classify(store, e))?
            .map_err(|e| CallError::Plugin(plugin_error_text(&e)))?;
        if enrichment.techniques.len() > MAX_TECHNIQUES {
            return Err(CallError::TooManyEntries {
                what: "techniques",
                count: enrichment.techniques.len(),
                max: MAX_TECHNIQUES,
            });
        }
        let bytes = enrichment_bytes(&enrichment);
        if bytes > plugin.limits.max_output_bytes {
            return Err(CallError::OutputTooLarge {
                bytes,
                max: plugin.limits.max_output_bytes,
            });
        }
        Ok(enrichment)
    }
}

/// Guest-controlled output: enforce limits and event references.
fn check_findings(
    plugin: &LoadedPlugin,
    batch: &Batch,
    findings: Vec<Finding>,
) -> Result<Vec<Finding>, CallError> {
    let max = plugin.limits.max_findings_per_batch;
    if findings.len() > max {
        return Err(CallError::TooManyFindings {
            count: findings.len(),
            max,
        });
    }
    for f in &findings {
        for (what, count, max) in [
            (
                "evidence entries",
                f.evidence.len(),
                MAX_EVIDENCE_PER_FINDING,
            ),
            ("techniques", f.techniques.len(), MAX_TECHNIQUES),
        ] {
            if count > max {
                return Err(CallError::TooManyEntries { what, count, max });
            }
        }
    }
    let bytes: usize = findings.iter().map(emitted_bytes).sum();
    if bytes > plugin.limits.max_output_bytes {
        return Err(CallError::OutputTooLarge {
            bytes,
            max: plugin.limits.max_output_bytes,
        });
    }
    // Batch ids are strictly increasing, so a binary search suffices.
    if let Some(bad) = findings.iter().find(|f| {
        batch
            .frames()
            .binary_search_by_key(&f.event_id, |e| e.id)
            .is_err()
    }) {
        return Err(CallError::UnknownEvent(bad.event_id));
    }
    Ok(findings)
}
