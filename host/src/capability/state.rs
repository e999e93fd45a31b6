//! `vigil:plugin/state`: a persistent per-plugin key-value store.
//!
//! The grant names the key prefixes a plugin may use (`key_prefixes`); an
//! empty list grants no keys at all. A key outside them gets
//! `access-denied`; storage problems get `quota-exceeded` or
//! `unavailable`, never a trap.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;
use wasmtime::component::{HasData, Linker};

use super::{CallView, Capability, HostCapability, Setup, SetupMode};
use crate::bindings::vigil::plugin::state as wit;
use crate::capability::tape::{RecordedError, Refusal, Tape};
use crate::state::store::{StateQuota, StateStore, StateStoreError};

/// Scope of a `state` grant, as the operator writes it and the audit log
/// records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateGrant {
    /// Key prefixes the plugin may read and write; empty means no keys.
    #[serde(default)]
    pub key_prefixes: Vec<String>,
    /// Most keys the plugin may store (default 100,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,
    /// Largest value in bytes (default 65,536).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_value_bytes: Option<usize>,
    /// Most bytes of keys plus values the plugin may store (default
    /// 16 MiB). This is what its state costs on disk, up to a small factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_total_bytes: Option<u64>,
}

impl StateGrant {
    /// The store's quota: the grant's fields over the defaults.
    pub fn quota(&self) -> StateQuota {
        let default = StateQuota::default();
        StateQuota {
            max_keys: self.max_keys.unwrap_or(default.max_keys),
            max_key_bytes: default.max_key_bytes,
            max_value_bytes: self.max_value_bytes.unwrap_or(default.max_value_bytes),
            max_total_bytes: self.max_total_bytes.unwrap_or(default.max_total_bytes),
        }
    }
}

/// A resolved `state` grant: the plugin's store (one per plugin identity,
/// shared by every generation) and its prefixes.
#[derive(Debug)]
pub struct StateShared {
    /// The plugin's store.
    pub store: Arc<StateStore>,
    key_prefixes: Arc<[String]>,
}

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

/// Borrowed view implementing the generated `Host` trait.
pub struct State<'a> {
    ctx: &'a mut StateCtx,
    tape: &'a mut Tape,
}

impl RecordedError for wit::Error {
    fn code(&self) -> String {
        match self {
            wit::Error::AccessDenied => "access-denied".into(),
            wit::Error::QuotaExceeded => "quota-exceeded".into(),
            wit::Error::Unavailable(why) => format!("unavailable: {why}"),
        }
    }
    fn from_code(code: &str) -> Option<Self> {
        match code {
            "access-denied" => Some(wit::Error::AccessDenied),
            "quota-exceeded" => Some(wit::Error::QuotaExceeded),
            _ => code
                .strip_prefix("unavailable: ")
                .map(|why| wit::Error::Unavailable(why.to_owned())),
        }
    }
    fn access_denied() -> Self {
        wit::Error::AccessDenied
    }
}

fn to_wit(e: &StateStoreError) -> wit::Error {
    match e {
        StateStoreError::Quota(_) => wit::Error::QuotaExceeded,
        // The plugin learns that storage failed, not where the host keeps it.
        StateStoreError::Io { source, .. } => wit::Error::Unavailable(source.kind().to_string()),
        StateStoreError::InUse { .. } => wit::Error::Unavailable("state in use".into()),
        StateStoreError::Store { .. } => wit::Error::Unavailable("storage error".into()),
    }
}

/// The error the plugin gets, with the full message (which quota, which
/// file) as the audit record's detail.
fn refusal(e: StateStoreError) -> Refusal<wit::Error> {
    Refusal {
        error: to_wit(&e),
        detail: Some(e.to_string()),
    }
}

impl wit::Host for State<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, wit::Error> {
        let ctx = &*self.ctx;
        let args = json!({ "key": key });
        self.tape.call_detailed(Capability::State, "get", args, || {
            ctx.check(&key)?;
            ctx.store.get(&key).map_err(refusal)
        })
    }

    fn set(
        &mut self,
        key: String,
        value: String,
        ttl_seconds: Option<u64>,
    ) -> Result<(), wit::Error> {
        let ctx = &*self.ctx;
        let args = json!({ "key": key, "value": value, "ttl-seconds": ttl_seconds });
        self.tape.call_detailed(Capability::State, "set", args, || {
            ctx.check(&key)?;
            ctx.store.set(&key, &value, ttl_seconds).map_err(refusal)
        })
    }

    fn delete(&mut self, key: String) -> Result<(), wit::Error> {
        let ctx = &*self.ctx;
        let args = json!({ "key": key });
        self.tape
            .call_detailed(Capability::State, "delete", args, || {
                ctx.check(&key)?;
                ctx.store.delete(&key).map_err(refusal)
            })
    }
}

/// `HasData` marker for the state capability.
pub struct StateData;

impl HasData for StateData {
    type Data<'a> = State<'a>;
}

impl HostCapability for StateData {
    const SUMMARY: &'static str = "persistent per-plugin key-value store";
    const PREINIT: bool = false;
    type Grant = StateGrant;
    type Shared = StateShared;
    type Ctx = StateCtx;

    fn resolve(grant: StateGrant, setup: &Setup<'_>) -> Result<StateShared, String> {
        let store = match &setup.mode {
            SetupMode::Live { state_stores, .. } => state_stores
                .open(setup.pack, setup.plugin, grant.quota())
                .map_err(|e| e.to_string())?,
            // The tape answers every state call in replay; this scratch
            // store only gives the context its shape.
            SetupMode::Replay { scratch, .. } => Arc::new(
                StateStore::open(
                    &scratch.join(format!("{}.state.redb", setup.plugin)),
                    StateQuota::default(),
                )
                .map_err(|e| e.to_string())?,
            ),
        };
        Ok(StateShared {
            store,
            key_prefixes: Arc::from(grant.key_prefixes),
        })
    }

    fn warnings(grant: &StateGrant, _: &Setup<'_>) -> Vec<String> {
        if grant.key_prefixes.is_empty() {
            vec![
                "state is granted but its `key_prefixes` list is empty, so every key is denied; \
                 list the prefixes it may use, e.g. state = { key_prefixes = [\"seen/\"] }"
                    .to_owned(),
            ]
        } else {
            Vec::new()
        }
    }

    fn start_call(shared: &Arc<StateShared>, _deadline: Instant) -> StateCtx {
        StateCtx::new(shared.store.clone(), shared.key_prefixes.clone())
    }

    fn add_to_linker<T: CallView<Self> + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, StateData>(linker, |t| {
            let (ctx, tape) = t.parts();
            State { ctx, tape }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::vigil::plugin::state::Host;
    use crate::state::store::StateQuota;

    fn ctx(prefixes: &[&str]) -> (tempfile::TempDir, StateCtx) {
        ctx_with_quota(prefixes, StateQuota::default())
    }

    fn ctx_with_quota(prefixes: &[&str], quota: StateQuota) -> (tempfile::TempDir, StateCtx) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("s"), quota).expect("open");
        let prefixes: Vec<String> = prefixes.iter().map(|p| (*p).to_owned()).collect();
        (dir, StateCtx::new(Arc::new(store), prefixes.into()))
    }

    #[test]
    fn keys_outside_granted_prefixes_are_access_denied() {
        let (_dir, mut ctx) = ctx(&["fail/"]);
        let mut tape = Tape::default();
        let mut state = State {
            ctx: &mut ctx,
            tape: &mut tape,
        };
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
        let statuses: Vec<_> = tape.into_calls().0.iter().map(|c| c.status).collect();
        use crate::audit::record::CallStatus::{Allowed, Denied};
        assert_eq!(statuses, [Allowed, Allowed, Denied, Denied, Denied]);
    }

    #[test]
    fn an_empty_prefix_list_grants_no_keys() {
        let (_dir, mut ctx) = ctx(&[]);
        let mut tape = Tape::default();
        let mut state = State {
            ctx: &mut ctx,
            tape: &mut tape,
        };
        assert_eq!(state.get("anything".into()), Err(wit::Error::AccessDenied));
    }

    #[test]
    fn a_set_over_quota_is_recorded_as_a_quota_exceeded_error_value() {
        let quota = StateQuota {
            max_total_bytes: 8,
            ..StateQuota::default()
        };
        let (_dir, mut ctx) = ctx_with_quota(&["k/"], quota);
        let mut tape = Tape::default();
        let mut state = State {
            ctx: &mut ctx,
            tape: &mut tape,
        };
        assert_eq!(state.set("k/a".into(), "12345".into(), None), Ok(()));
        assert_eq!(
            state.set("k/b".into(), "1".into(), None),
            Err(wit::Error::QuotaExceeded)
        );
        let (calls, _) = tape.into_calls();
        let refused = &calls[1];
        assert_eq!(refused.status, crate::audit::record::CallStatus::Failed);
        assert_eq!(refused.result, json!({ "error": "quota-exceeded" }));
        let detail = refused.detail.as_deref().unwrap_or_default();
        assert!(detail.contains("max_total_bytes"), "{detail}");
    }
}
