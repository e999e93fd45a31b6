//! `vigil:plugin/config`: read the plugin's own configuration.
//!
//! The entries are the plugin's `config` table from `pack.toml`, rendered
//! once at load (strings verbatim, other values as JSON) and shared by every
//! call through an `Arc`.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use wasmtime::component::{HasData, Linker};

use super::{CallView, Capability, HostCapability, NoScope, Setup};
use crate::bindings::vigil::plugin::config as wit;
use crate::capability::tape::Tape;

/// Per-call config context.
#[derive(Debug, Clone)]
pub struct ConfigCtx {
    /// Sorted by key.
    entries: Arc<Vec<(String, String)>>,
}

impl ConfigCtx {
    /// A context over `entries`, which must be sorted by key.
    pub fn new(entries: Arc<Vec<(String, String)>>) -> Self {
        debug_assert!(entries.windows(2).all(|w| w[0].0 <= w[1].0));
        ConfigCtx { entries }
    }
}

/// Borrowed view implementing the generated `Host` trait.
pub struct Config<'a> {
    ctx: &'a mut ConfigCtx,
    tape: &'a mut Tape,
}

crate::access_denied_only_error!(wit::Error);

impl wit::Host for Config<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, wit::Error> {
        let entries = &self.ctx.entries;
        self.tape
            .call(Capability::Config, "get", json!({ "key": key }), || {
                Ok(entries
                    .binary_search_by(|(k, _)| k.as_str().cmp(&key))
                    .ok()
                    .map(|i| entries[i].1.clone()))
            })
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, wit::Error> {
        let entries = &self.ctx.entries;
        self.tape
            .call(Capability::Config, "get-all", json!({}), || {
                Ok(entries.to_vec())
            })
    }
}

/// `HasData` marker for the config capability.
pub struct ConfigData;

impl HasData for ConfigData {
    type Data<'a> = Config<'a>;
}

impl HostCapability for ConfigData {
    const SUMMARY: &'static str = "read the plugin's own config";
    const PREINIT: bool = true;
    type Grant = NoScope;
    /// The entries, sorted by key.
    type Shared = Vec<(String, String)>;
    type Ctx = ConfigCtx;

    fn resolve(_: NoScope, setup: &Setup<'_>) -> Result<Self::Shared, String> {
        Ok(setup.config.to_vec())
    }

    fn start_call(entries: &Arc<Self::Shared>, _deadline: Instant) -> ConfigCtx {
        ConfigCtx::new(entries.clone())
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ConfigData>(linker, |t| {
            let (ctx, tape) = t.parts();
            Config { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::config::Host;

    #[test]
    fn get_finds_present_keys_and_reports_absent_ones_as_none() {
        let mut ctx = ConfigCtx::new(Arc::new(vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "[2]".to_owned()),
        ]));
        let mut tape = Tape::default();
        let mut config = Config {
            ctx: &mut ctx,
            tape: &mut tape,
        };
        assert_eq!(config.get("b".into()), Ok(Some("[2]".into())));
        assert_eq!(config.get("zzz".into()), Ok(None));
        assert_eq!(config.get_all().map(|v| v.len()), Ok(2));
        assert_eq!(tape.into_calls().0.len(), 3, "every read is recorded");
    }
}
