//! Host-side bindings generated from `wit/` by wasmtime's `bindgen!`.
//!
//! With wasmtime 48's defaults, import functions are synchronous, cannot
//! trap (they return the WIT result type directly) and take `&mut self` on
//! the `Host` trait of each interface; `add_to_linker::<T, D>` takes a
//! `D: HasData` marker and a `fn(&mut T) -> D::Data<'_>` getter.
//!
//! One `bindgen!` per world. The `detector` world's bindings own the shared
//! interfaces (types and capabilities); the other worlds map them onto those
//! modules with `with`, so a capability's `Host` impl serves every world.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "detector",
    // Tests compare call results and findings directly.
    additional_derives: [PartialEq, Eq],
});

/// The `enricher` world.
pub mod enricher {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "enricher",
        with: {
            "vigil:plugin/types": super::vigil::plugin::types,
            "vigil:plugin/log": super::vigil::plugin::log,
            "vigil:plugin/config": super::vigil::plugin::config,
            "vigil:plugin/state": super::vigil::plugin::state,
            "vigil:plugin/clock": super::vigil::plugin::clock,
            "vigil:plugin/http": super::vigil::plugin::http,
            "vigil:plugin/files": super::vigil::plugin::files,
        },
    });
}
