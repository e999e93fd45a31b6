//! Loading a pack into a [`Generation`]: read the manifest, compile each
//! component, check its imports against the effective grant, link only
//! what was granted, and pre-instantiate.
//!
//! Scope: per pack, validated once at load. Loading never runs plugin code,
//! which is what lets `vigil check` validate a pack safely. Every problem
//! in the pack is collected, so one `vigil check` lists all of them.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::bindings::DetectorPre;
use crate::bindings::enricher::EnricherPre;
use crate::capability::files::PackFiles;
use crate::capability::{Capability, ImportKind, Setup, SetupMode, classify_import};
use crate::load::engine::{ComponentCache, sha256_hex};
use crate::load::grants::GrantSet;
use crate::load::manifest::{ManifestError, PackManifest, PluginManifest, World};
use crate::load::policy::{EnrichmentConfig, Policy};
use crate::load::preinit::{InitMode, InitRun, Preinitialised};
use crate::revocation::{RevocationScope, Revocations};
use crate::run::init::InitRecord;
use crate::run::limits::LimitsRecord;
use crate::run::plugin::{LoadedPlugin, PluginPre};
use crate::run::sandbox::{CallTemplate, SharedGrants, linker_for};
use crate::state::stores::StateStores;

/// Where a pack's files come from.
#[derive(Debug, Clone)]
pub enum PackSource {
    /// A directory holding `pack.toml` and the files it names.
    Dir(PathBuf),
    /// Files compiled into the binary (the bundled starter pack).
    Embedded {
        /// Shown in messages instead of a directory.
        label: &'static str,
        /// Relative path and contents of each file.
        files: &'static [(&'static str, &'static [u8])],
    },
}

impl PackSource {
    /// Read a file of the pack. `rel` must already be a contained path.
    pub fn read(&self, rel: &str) -> std::io::Result<Cow<'static, [u8]>> {
        match self {
            PackSource::Dir(dir) => std::fs::read(dir.join(rel)).map(Cow::Owned),
            PackSource::Embedded { files, .. } => files
                .iter()
                .find(|(name, _)| *name == rel)
                .map(|(_, bytes)| Cow::Borrowed(*bytes))
                .ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "not in the embedded pack")
                }),
        }
    }

    /// The pack's files, for the `files` capability.
    pub fn files(&self) -> PackFiles<'_> {
        match self {
            PackSource::Dir(dir) => PackFiles::Dir(dir),
            PackSource::Embedded { files, .. } => PackFiles::Embedded(files),
        }
    }

    /// How to name `rel` in messages.
    pub fn display(&self, rel: &str) -> String {
        match self {
            PackSource::Dir(dir) => dir.join(rel).display().to_string(),
            PackSource::Embedded { label, .. } => format!("{label}/{rel}"),
        }
    }
}

/// Why a pack (or one of its plugins) cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `pack.toml` is unreadable or invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// A file the manifest names cannot be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The component bytes are not a valid component.
    #[error("pack `{pack}`, plugin `{plugin}`: {file} is not a valid Wasm component: {message}")]
    Compile {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Component file.
        file: String,
        /// Compiler message.
        message: String,
    },
    /// The component imports a capability outside its effective grant.
    #[error(
        "pack `{pack}`, plugin `{plugin}`: imports `{interface}` but capability `{capability}` is not granted \
         ({why}); refusing to load"
    )]
    NotGranted {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Imported interface.
        interface: String,
        /// The capability it belongs to.
        capability: Capability,
        /// What is missing and how to fix it.
        why: String,
    },
    /// The component imports something Vigil never provides.
    #[error(
        "pack `{pack}`, plugin `{plugin}`: imports `{interface}`, which Vigil does not provide \
         (capabilities: {}; standard WASI is linked deny-all)",
        Capability::names()
    )]
    UnknownImport {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Imported interface.
        interface: String,
    },
    /// The component does not export the world the manifest declares.
    #[error("pack `{pack}`, plugin `{plugin}`: does not implement the `{world}` world: {message}")]
    WrongWorld {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Declared world.
        world: &'static str,
        /// What did not match.
        message: String,
    },
    /// A grant cannot be put in force: the state store cannot be opened,
    /// a secret is missing, a granted directory is not in the pack.
    #[error("pack `{pack}`, plugin `{plugin}`: {message}")]
    Grant {
        /// Pack name.
        pack: String,
        /// Plugin id.
        plugin: String,
        /// Whose grant.
        capability: Capability,
        /// Why, naming the entry and what to change.
        message: String,
    },
}

/// Every problem found while loading a pack.
#[derive(Debug)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// What `vigil check` reports per plugin.
#[derive(Debug, Clone)]
pub struct PluginReport {
    /// Plugin id.
    pub id: String,
    /// Declared world.
    pub world: World,
    /// Capabilities requested in `pack.toml`.
    pub requested: Vec<Capability>,
    /// Effective capabilities (requested ∩ granted).
    pub effective: Vec<Capability>,
    /// Capabilities the component actually imports.
    pub imported: Vec<Capability>,
    /// SHA-256 of the component.
    pub digest: String,
    /// Everything the plugin is allowed, as recorded in the audit log.
    pub grants: GrantSet,
    /// SHA-256 of `grants`.
    pub grants_digest: String,
    /// The component's bytes (kept for the audit log's component store).
    pub component: ComponentBytes,
    /// Grants that load but cannot work as written, for `vigil check`.
    pub warnings: Vec<String>,
    /// How its instances start (`None` for responders, never called yet).
    pub init: Option<InitRecord>,
}

/// A component's bytes; `Debug` shows only the length.
#[derive(Clone)]
pub struct ComponentBytes(Arc<[u8]>);

impl ComponentBytes {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for ComponentBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ComponentBytes({} bytes)", self.0.len())
    }
}

/// A loaded pack: its manifest and ready-to-call detectors.
#[derive(Debug)]
pub struct Generation {
    /// Generation number within the host process, from 1.
    pub number: u64,
    /// The pack manifest.
    pub manifest: PackManifest,
    /// Where the pack came from.
    pub source: PackSource,
    /// Detectors in manifest order.
    pub detectors: Vec<Arc<LoadedPlugin>>,
    /// Enrichers in manifest order; each finding goes through all of them.
    pub enrichers: Vec<Arc<LoadedPlugin>>,
    /// Revocations in force, shared with the runtime.
    pub revocations: Arc<Revocations>,
    /// One report per plugin, detectors and responders alike.
    pub reports: Vec<PluginReport>,
    /// How findings wait for the enrichers (the operator's `[enrichment]`).
    pub enrichment: EnrichmentConfig,
}

/// The current generation of every pack a host runs, behind one atomic
/// pointer: a reload swaps in a new list with one pack replaced, added or
/// removed.
///
/// Readers take an `Arc` of the whole list ([`PackSet::current`]) per
/// batch and keep it until the batch and its enrichments are done, so
/// in-flight work finishes on the generations it started with while new
/// batches get the new ones. No lock: a swap never waits for readers.
/// Pack names are distinct within a set (findings, state and the audit log
/// name a plugin by pack and id).
#[derive(Debug)]
pub struct PackSet {
    current: arc_swap::ArcSwap<Vec<Arc<Generation>>>,
}

impl PackSet {
    /// A set holding `generations` (distinct pack names; the host checks).
    pub fn new(generations: Vec<Arc<Generation>>) -> Self {
        PackSet {
            current: arc_swap::ArcSwap::from_pointee(generations),
        }
    }

    /// The generations new work runs on, one per pack.
    pub fn current(&self) -> Arc<Vec<Arc<Generation>>> {
        self.current.load_full()
    }

    /// The current generation of the pack named `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Generation>> {
        (self.current.load().iter())
            .find(|g| g.manifest.name == name)
            .cloned()
    }

    /// Make `generation` its pack's current one (adding the pack if it is
    /// new); returns the generation it replaces, which lives on until the
    /// last batch using it is done.
    pub fn put(&self, generation: Arc<Generation>) -> Option<Arc<Generation>> {
        let name = generation.manifest.name.clone();
        let previous = self.current.rcu(|list| {
            let mut list: Vec<Arc<Generation>> = (**list).clone();
            match list.iter_mut().find(|g| g.manifest.name == name) {
                Some(slot) => *slot = generation.clone(),
                None => list.push(generation.clone()),
            }
            list
        });
        previous.iter().find(|g| g.manifest.name == name).cloned()
    }

    /// Stop running the pack named `name`; returns its last generation.
    pub fn remove(&self, name: &str) -> Option<Arc<Generation>> {
        let previous = self.current.rcu(|list| {
            (list.iter())
                .filter(|g| g.manifest.name != name)
                .cloned()
                .collect::<Vec<_>>()
        });
        previous.iter().find(|g| g.manifest.name == name).cloned()
    }
}

/// Shared inputs of a load.
#[derive(Debug, Clone)]
pub struct LoadContext<'a> {
    /// The engine plugins run on.
    pub engine: &'a Engine,
    /// Compiled-component cache.
    pub cache: &'a ComponentCache,
    /// Operator policy.
    pub policy: &'a Policy,
    /// Plugin state stores, shared with the other generations.
    pub state_stores: &'a StateStores,
    /// Origin of monotonic clock readings.
    pub clock_origin: Instant,
    /// Revocations checked on every host call.
    pub revocations: &'a Arc<Revocations>,
    /// Number of the generation being loaded.
    pub generation: u64,
    /// Where files plugins read are kept for replay (the audit
    /// directory's `files/` store); `None` without an audit log.
    pub file_store: Option<PathBuf>,
}

impl Generation {
    /// Load the pack at `source` under `ctx.policy`.
    pub fn load(ctx: &LoadContext<'_>, source: PackSource) -> Result<Generation, LoadErrors> {
        let manifest_bytes = source.read("pack.toml").map_err(|e| {
            LoadErrors(vec![LoadError::Read {
                file: source.display("pack.toml"),
                source: e,
            }])
        })?;
        let text = String::from_utf8_lossy(&manifest_bytes);
        let manifest = PackManifest::parse(&source.display("pack.toml"), &text)
            .map_err(|e| LoadErrors(vec![e.into()]))?;

        let mut errors = Vec::new();
        let mut detectors = Vec::new();
        let mut enrichers = Vec::new();
        let mut reports = Vec::new();
        for plugin in &manifest.plugins {
            match load_plugin(ctx, &source, &manifest, plugin) {
                Ok((loaded, report)) => {
                    match plugin.world {
                        World::Detector => detectors.extend(loaded),
                        World::Enricher => enrichers.extend(loaded),
                        // Checked, not called yet (`load_plugin`).
                        World::Responder => {}
                    }
                    reports.push(report);
                }
                Err(e) => errors.extend(e),
            }
        }
        if errors.is_empty() {
            Ok(Generation {
                number: ctx.generation,
                manifest,
                source,
                detectors,
                enrichers,
                revocations: ctx.revocations.clone(),
                reports,
                enrichment: ctx.policy.enrichment.clone(),
            })
        } else {
            Err(LoadErrors(errors))
        }
    }
}

fn load_plugin(
    ctx: &LoadContext<'_>,
    source: &PackSource,
    manifest: &PackManifest,
    plugin: &PluginManifest,
) -> Result<(Option<Arc<LoadedPlugin>>, PluginReport), Vec<LoadError>> {
    let (pack, id) = (manifest.name.as_str(), plugin.id.as_str());
    let file = source.display(&plugin.component);
    let bytes = source.read(&plugin.component).map_err(|e| {
        vec![LoadError::Read {
            file: file.clone(),
            source: e,
        }]
    })?;
    let component = ctx.cache.load(ctx.engine, &bytes).map_err(|e| {
        vec![LoadError::Compile {
            pack: pack.into(),
            plugin: id.into(),
            file: file.clone(),
            message: format!("{e:#}"),
        }]
    })?;

    // First check: every import must be granted (or be WASI/types).
    let effective = ctx.policy.effective(pack, id, &plugin.capabilities);

    let mut errors = Vec::new();
    let mut imported = Vec::new();
    for (name, _) in component.component_type().imports(ctx.engine) {
        match classify_import(name) {
            ImportKind::Capability(cap) => {
                imported.push(cap);
                if !effective.contains(&cap) {
                    let why = if plugin.capabilities.contains(&cap) {
                        format!(
                            "requested but not granted: add \"{cap}\" to `capabilities` under \
                             [packs.{pack}.plugins.{id}] in the operator policy"
                        )
                    } else {
                        format!(
                            "not requested: add \"{cap}\" to the plugin's `capabilities` in pack.toml"
                        )
                    };
                    errors.push(LoadError::NotGranted {
                        pack: pack.into(),
                        plugin: id.into(),
                        interface: name.to_owned(),
                        capability: cap,
                        why,
                    });
                }
            }
            ImportKind::Types | ImportKind::Wasi => {}
            ImportKind::Unknown => errors.push(LoadError::UnknownImport {
                pack: pack.into(),
                plugin: id.into(),
                interface: name.to_owned(),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    imported.sort();

    let limits = ctx.policy.limits_for(pack, id, plugin.world);
    let config = plugin.config_entries();
    // Each effective capability's scope is recorded as the log will hold
    // it, and the grant is put in force from that record, so what runs is
    // exactly what the log says (`capability/registry.rs`).
    let scopes = match ctx.policy.grant(pack, id) {
        Some(grant) => (effective.iter())
            .filter_map(|&c| grant.scope(c).map(|scope| (c, scope)))
            .collect(),
        None => Default::default(),
    };
    let grants = GrantSet {
        requested: plugin.capabilities.clone(),
        effective: effective.clone(),
        config: config.clone(),
        limits: LimitsRecord::from(limits),
        scopes,
    };
    let setup = Setup {
        pack,
        plugin: id,
        config: &config,
        log_records_per_call: limits.log_records_per_call,
        deadline: limits.deadline,
        clock_origin: ctx.clock_origin,
        mode: SetupMode::Live {
            pack_files: source.files(),
            file_store: ctx.file_store.clone(),
            secrets_file: ctx.policy.secrets.file.as_deref(),
            state_stores: ctx.state_stores,
        },
    };
    let (shared, warnings) =
        SharedGrants::resolve(&effective, &grants.scopes, &setup).map_err(|e| {
            vec![LoadError::Grant {
                pack: pack.into(),
                plugin: id.into(),
                capability: e.capability,
                message: e.message,
            }]
        })?;
    let mut report = PluginReport {
        id: id.to_owned(),
        world: plugin.world,
        requested: plugin.capabilities.clone(),
        effective: effective.clone(),
        imported,
        digest: sha256_hex(&bytes),
        grants_digest: grants.digest(),
        warnings,
        grants,
        component: ComponentBytes(Arc::from(&*bytes)),
        init: None,
    };
    let wrong_world = |world: &'static str, message: String| {
        vec![LoadError::WrongWorld {
            pack: pack.into(),
            plugin: id.into(),
            world,
            message,
        }]
    };
    if plugin.world == World::Responder {
        // The host side of responders arrives with response actions; check
        // the exports now so a pack is not accepted today and refused later.
        let exports: Vec<(String, bool)> = component
            .component_type()
            .exports(ctx.engine)
            .map(|(n, item)| {
                (
                    n.to_owned(),
                    matches!(item.ty, ComponentItem::ComponentFunc(_)),
                )
            })
            .collect();
        for needed in ["init", "respond"] {
            if !exports.iter().any(|(n, is_func)| n == needed && *is_func) {
                return Err(wrong_world(
                    "responder",
                    format!("missing export `{needed}`"),
                ));
            }
        }
        return Ok((None, report));
    }

    // Second check happens at call time inside each capability; here we link
    // exactly the effective capabilities and nothing else. The original is
    // linked first, before any plugin code runs, so a component of the
    // wrong world is refused before its `init` is run for a snapshot.
    let original = link_plugin(ctx.engine, &component, &effective, plugin.world)
        .map_err(|e| wrong_world(plugin.world.name(), format!("{e:#}")))?;

    let template = CallTemplate {
        memory_bytes: limits.memory_bytes as usize,
        config: Arc::new(config),
        grants: shared,
        revocations: Some(Arc::new(RevocationScope::new(
            ctx.revocations.clone(),
            Arc::from(pack),
            Arc::from(id),
        ))),
    };
    // Run `init` once now and start every instance from its snapshot, or
    // say why not (`preinit.rs`).
    let run = InitRun {
        engine: ctx.engine,
        cache: ctx.cache,
        bytes: &bytes,
        world: plugin.world,
        effective: &effective,
        template: &template,
        deadline: limits.deadline,
    };
    let preinit = if ctx.policy.preinit == Some(false) {
        Preinitialised {
            component,
            mode: InitMode::PerInstance {
                why: "pre-initialisation is off in the policy (`preinit = false`)".into(),
            },
            host_calls: Vec::new(),
            divergence: None,
        }
    } else {
        run.preinitialise(component, template.live_tape())
    };
    report.init = Some(InitRecord {
        mode: preinit.mode.clone(),
        host_calls: preinit.host_calls,
    });
    let (pre, per_instance) = match preinit.mode {
        InitMode::Snapshot { .. } => (
            link_plugin(ctx.engine, &preinit.component, &effective, plugin.world)
                .map_err(|e| wrong_world(plugin.world.name(), format!("{e:#}")))?,
            Some(original),
        ),
        InitMode::PerInstance { .. } => (original, None),
    };
    let loaded = LoadedPlugin {
        pack: Arc::from(pack),
        pack_version: Arc::from(manifest.version.as_str()),
        generation: ctx.generation,
        id: Arc::from(id),
        digest: report.digest.clone(),
        grants_digest: report.grants_digest.clone(),
        effective,
        limits,
        engine: ctx.engine.clone(),
        pre,
        template,
        init: preinit.mode,
        per_instance,
        health: Mutex::default(),
        projection: Mutex::default(),
    };
    Ok((Some(Arc::new(loaded)), report))
}

/// Link exactly `effective` (plus deny-all WASI) and pre-instantiate
/// `component` for `world` (a detector or an enricher).
pub(crate) fn link_plugin(
    engine: &Engine,
    component: &Component,
    effective: &[Capability],
    world: World,
) -> wasmtime::Result<PluginPre> {
    let instance_pre = linker_for(engine, effective)?.instantiate_pre(component)?;
    Ok(match world {
        World::Detector => PluginPre::Detector(DetectorPre::new(instance_pre)?),
        World::Enricher => PluginPre::Enricher(EnricherPre::new(instance_pre)?),
        World::Responder => wasmtime::bail!("the host does not call responders yet"),
    })
}
