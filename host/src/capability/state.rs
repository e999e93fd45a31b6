//! `vigil:plugin/state`: a persistent per-plugin key-value store.
//!
//! The grant names the key prefixes a plugin may use (`key_prefixes`); an
//! empty list grants no keys at all. A key outside them gets
//! `access-denied`; storage problems get `quota-exceeded` or
//! `unavailable`, never a trap.

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::bindings::vigil::plugin::state as wit;
use crate::state_store::{StateStore, StateStoreError};

/// Per-call state context.
#[derive(Debug, Clone)]
pub struct StateCtx {
    store: Arc<StateStore>,
    key_prefixes: Arc<[String]>,
}

impl StateCtx {
    /// A context over `store` allowing keys that start with one of `key_prefixes`.
    pub fn new(store: Arc<StateStore>, key_prefixes: Arc<[String]>) -> Self {
        StateCtx {
            store,
            key_prefixes,
        }
    }

    fn check(&self, key: &str) -> Result<(), wit::Error> {
        if self
            .key_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
        {
            Ok(())
        } else {
            Err(wit::Error::AccessDenied)
        }
    }
}

/// Implemented by store data that carries a [`StateCtx`].
pub trait StateView {
    /// The state context of this store.
    fn state_ctx(&mut self) -> &mut StateCtx;
}

/// Borrowed view implementing the generated `Host` trait.
pub struct State<'a> {
    ctx: &'a mut StateCtx,
}

fn to_wit(e: StateStoreError) -> wit::Error {
    match e {
        StateStoreError::Quota(_) => wit::Error::QuotaExceeded,
        // The plugin learns that storage failed, not where the host keeps it.
        StateStoreError::Io { source, .. } => wit::Error::Unavailable(source.kind().to_string()),
    }
}

impl wit::Host for State<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, wit::Error> {
        self.ctx.check(&key)?;
        Ok(self.ctx.store.get(&key))
    }

    fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u64>,
    ) -> Result<(), wit::Error> {
        self.ctx.check(&key)?;
        self.ctx
            .store
            .set(&key, &value, ttl_seconds)
            .map_err(to_wit)
    }

    fn delete(&mut self, key: String) -> Result<(), wit::Error> {
        self.ctx.check(&key)?;
        self.ctx.store.delete(&key).map_err(to_wit)
    }
}

/// `HasData` marker for the state capability.
pub struct StateData;

impl HasData for StateData {
    type Data<'a> = State<'a>;
}

/// Link `vigil:plugin/state`.
pub fn add_to_linker<T: StateView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, StateData>(linker, |t| State { ctx: t.state_ctx() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::state::Host;
    use crate::state_store::StateQuota;

    fn ctx(prefixes: &[&str]) -> (tempfile::TempDir, StateCtx) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("s"), StateQuota::default()).expect("open");
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        (dir, StateCtx::new(Arc::new(store), prefixes.into()))
    }

    #[test]
    fn keys_outside_granted_prefixes_are_access_denied() {
        let (_dir, mut ctx) = ctx(&["fail/"]);
        let mut state = State { ctx: &mut ctx };
        assert_eq!(state.set("fail/alice".into(), "1".into(), None), Ok(()));
        assert_eq!(state.get("fail/alice".into()), Ok(Some("1".into())));
        assert_eq!(
            state.set("other/x".into(), "1".into(), None),
            Err(wit::Error::AccessDenied)
        );
        assert_eq!(state.get("other/x".into()), Err(wit::Error::AccessDenied));
        assert_eq!(
            state.delete("other/x".into()),
            Err(wit::Error::AccessDenied)
        );
    }

    #[test]
    fn an_empty_prefix_list_grants_no_keys() {
        let (_dir, mut ctx) = ctx(&[]);
        let mut state = State { ctx: &mut ctx };
        assert_eq!(state.get("anything".into()), Err(wit::Error::AccessDenied));
    }
}
