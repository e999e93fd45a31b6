//! `vigil inspect` on the example plugins: exactly the interfaces each imports.

use vigil::capability::Capability;
use vigil::load::manifest::PackManifest;

#[test]
fn inspect_lists_exactly_the_capabilities_each_example_plugin_imports_and_requests() {
    let engine = vigil::load::engine::build_engine().expect("engine");
    let pack_toml = std::fs::read_to_string(
        std::path::Path::new(vigil::artifacts::STARTER_PACK_DIR).join("pack.toml"),
    )
    .expect("read");
    let manifest = PackManifest::parse("pack.toml", &pack_toml).expect("valid");
    let expected: [(&str, &[Capability]); 3] = [
        ("encoded-powershell", &[]),
        ("brute-force", &[Capability::Log, Capability::State]),
        ("ioc-match", &[Capability::Files]),
    ];
    for (crate_name, caps) in expected {
        let bytes = std::fs::read(vigil_tests::component(crate_name)).expect("component");
        let inspection = vigil::load::inspect::inspect(&engine, &bytes).expect("inspect");
        assert_eq!(inspection.world, "detector", "{crate_name}");
        let mut want: Vec<String> = caps.iter().map(|c| c.interface()).collect();
        want.sort();
        assert_eq!(inspection.capabilities, want, "{crate_name}");
        assert!(
            inspection.unknown.is_empty(),
            "{crate_name}: {:?}",
            inspection.unknown
        );
        assert!(
            inspection.wasi.iter().all(|w| w.starts_with("wasi:")),
            "{crate_name}"
        );
        // The manifest requests exactly what the component imports.
        let entry = manifest
            .plugins
            .iter()
            .find(|p| p.id == crate_name)
            .expect("in pack.toml");
        let mut requested: Vec<String> = entry.capabilities.iter().map(|c| c.interface()).collect();
        requested.sort();
        assert_eq!(
            requested, want,
            "{crate_name}: pack.toml requests what the component imports"
        );
    }
}
