//! `vigil inspect`: what a component declares, without running it.

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::capability::{ImportKind, classify_import};

/// A component's declared surface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// `detector`, `enricher`, `responder`, or `unknown` when the exports match none.
    pub world: String,
    /// Exported names with their kind (`func`, `instance`, ...).
    pub exports: Vec<String>,
    /// Imported Vigil capabilities (these need grants).
    pub capabilities: Vec<String>,
    /// Imported standard WASI interfaces (linked deny-all).
    pub wasi: Vec<String>,
    /// Imported type-only interfaces (no authority).
    pub types: Vec<String>,
    /// Imports Vigil does not provide (the plugin cannot load).
    pub unknown: Vec<String>,
}

fn kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "func",
        ComponentItem::CoreFunc(_) => "core func",
        ComponentItem::Module(_) => "module",
        ComponentItem::Component(_) => "component",
        ComponentItem::ComponentInstance(_) => "instance",
        ComponentItem::Type(_) => "type",
        ComponentItem::Resource(_) => "resource",
    }
}

/// Describe the component in `bytes`.
pub fn inspect(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Inspection> {
    let component = Component::new(engine, bytes)?;
    let ty = component.component_type();
    let exports: Vec<(String, &'static str)> = ty
        .exports(engine)
        .map(|(n, item)| (n.to_owned(), kind(&item.ty)))
        .collect();
    let has = |name: &str| exports.iter().any(|(n, k)| n == name && *k == "func");
    let world = if has("init") && has("detect") {
        "detector"
    } else if has("init") && has("respond") {
        "responder"
    } else if has("init") && has("enrich") {
        "enricher"
    } else {
        "unknown"
    };
    let mut inspection = Inspection {
        world: world.to_owned(),
        exports: exports.iter().map(|(n, k)| format!("{n} ({k})")).collect(),
        capabilities: Vec::new(),
        wasi: Vec::new(),
        types: Vec::new(),
        unknown: Vec::new(),
    };
    for (name, _) in ty.imports(engine) {
        let list = match classify_import(name) {
            ImportKind::Capability(_) => &mut inspection.capabilities,
            ImportKind::Wasi => &mut inspection.wasi,
            ImportKind::Types => &mut inspection.types,
            ImportKind::Unknown => &mut inspection.unknown,
        };
        list.push(name.to_owned());
    }
    for list in [
        &mut inspection.capabilities,
        &mut inspection.wasi,
        &mut inspection.types,
        &mut inspection.unknown,
    ] {
        list.sort();
    }
    Ok(inspection)
}

impl std::fmt::Display for Inspection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "world: {}", self.world)?;
        let sections = [
            ("exports", &self.exports, true),
            ("capability imports (need grants)", &self.capabilities, true),
            ("WASI imports (linked deny-all)", &self.wasi, true),
            ("type-only imports", &self.types, true),
            // Shown only when there are some: they make the plugin unloadable.
            (
                "imports Vigil does not provide (cannot load)",
                &self.unknown,
                false,
            ),
        ];
        for (title, items, show_when_empty) in sections {
            if items.is_empty() && !show_when_empty {
                continue;
            }
            writeln!(f, "{title}:")?;
            if items.is_empty() {
                writeln!(f, "  (none)")?;
            }
            for item in items {
                writeln!(f, "  {item}")?;
            }
        }
        Ok(())
    }
}
