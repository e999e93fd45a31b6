//! Host-side bindings generated from `wit/` by wasmtime's `bindgen!`.
//!
//! With wasmtime 48's defaults, import functions are synchronous, cannot
//! trap (they return the WIT result type directly) and take `&mut self` on
//! the `Host` trait of each interface; `add_to_linker::<T, D>` takes a
//! `D: HasData` marker and a `fn(&mut T) -> D::Data<'_>` getter.

#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../wit",
    world: "detector",
    // Tests compare call results and findings directly.
    additional_derives: [PartialEq, Eq],
});
