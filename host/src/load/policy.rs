//! The operator's policy (`vigil.toml`): what each pack's plugins are
//! granted and the limits they run under.
//!
//! Deny by default: a plugin with no entry is granted nothing, an empty
//! list grants nothing, and only capabilities both requested in
//! `pack.toml` and granted here are effective.
//!
//! ```toml
//! state_dir = ".vigil"          # plugin state and compiled-component cache
//! batch_size = 256              # events per plugin call
//! batch_linger_ms = 5           # a live source's batch closes this long after its first event
//! preinit = true                # run each plugin's `init` once at load, snapshot it (false: every instance)
//!
//! [limits]                      # defaults for every plugin
//! deadline_ms = 250             # wall-clock budget per call (init + detect); enrichers
//!                               # default to 15000 unless their own limits set it
//! memory_mb = 64                # memory cap per instance (all its memories and tables)
//! max_findings_per_batch = 10000
//! max_output_bytes = 4194304    # one call's findings as emitted JSON (also caps an enrichment)
//! quarantine_after = 3          # consecutive misbehaving calls (trap, deadline, memory, bad output) before quarantine
//! quarantine_ms = 30000         # first quarantine's back-off; doubles per failed probe, at most 10 min
//! log_records_per_call = 100
//!
//! [audit]                       # the audit log (see `audit/mod.rs`)
//! path = ".vigil/audit"         # default: <state_dir>/audit
//! inputs = "full"               # full | digest: events recorded whole or as SHA-256 only
//! fsync_interval_ms = 10        # longest wait for fdatasync after a write (0: every commit)
//! segment_mb = 64               # segment size before rotation
//! checkpoint_every = 10000      # records between checkpoint records
//! redact = { drop = ["Event.EventData.IpAddress"], hash = ["Event.EventData.TargetUserName"] }
//!
//! [enrichment]                  # how findings wait for enrichers
//! workers = 8                   # enricher calls in flight at once
//! queue = 4096                  # findings waiting for a worker; beyond, un-enriched at once
//! wait_ms = 20000               # longest a finding waits, then leaves un-enriched saying so
//!
//! [secrets]
//! file = "/etc/vigil/secrets.toml" # NAME = "value"; names not in it come from env vars
//!
//! [packs.starter.plugins.brute-force]
//! capabilities = ["log", "state"]
//! limits = { deadline_ms = 500 } # per-plugin overrides
//! [packs.starter.plugins.brute-force.state]  # or inline: state = { key_prefixes = [...] }
//! key_prefixes = ["fail/"]      # keys the plugin may use; none if empty
//! max_keys = 100000             # most stored keys (default 100000)
//! max_value_bytes = 65536       # largest value in bytes (default 64 KiB)
//! max_total_bytes = 16777216    # bytes of keys plus values stored (default 16 MiB)
//!
//! [packs.ai.plugins.ai-enrich]
//! capabilities = ["http", "config"]
//! [packs.ai.plugins.ai-enrich.http]
//! origins = ["https://api.openai.com"]   # also "https://*.example.com"
//! methods = ["POST"]
//! max_request_bytes = 65536
//! max_response_bytes = 1048576
//! timeout_ms = 10000
//! requests_per_minute = 60
//! headers = [{ origin = "https://api.openai.com", name = "Authorization", value = "Bearer ${AI_API_KEY}" }]
//!
//! [serve]                       # `vigil serve` only: packs directory, ingest, admin
//! packs_dir = "packs"           # (every field: `service.rs`)
//!
//! [packs.starter.plugins.ioc-match]
//! capabilities = ["files"]
//! files = { dirs = ["intel/"], max_file_bytes = 16777216 } # pack directories it may read below
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::audit::config::{AuditConfig, InputMode, RedactConfig};
use crate::capability::registry::for_each_capability;
use crate::capability::{Capability, HostCapability};
use crate::load::engine::MAX_PLUGIN_MEMORY_BYTES;
use crate::load::manifest::World;
pub use crate::load::service::ServeConfig;
pub use crate::run::limits::Limits;

/// A parsed `vigil.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Directory for plugin state and the compiled-component cache
    /// (default `.vigil` in the working directory).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Events per plugin call (default 256).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// How long a batch from a live source (stdin, a FIFO) waits for more
    /// events after its first, in ms (default 5, at most 60,000).
    #[serde(default)]
    pub batch_linger_ms: Option<u64>,
    /// Run each plugin's `init` once at load and start every instance from
    /// a snapshot of it (default true; `preinit.rs`). `false` runs `init`
    /// on every fresh instance, as hosts before pre-initialisation did.
    #[serde(default)]
    pub preinit: Option<bool>,
    /// Default limits for every plugin.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Where secrets for `http` header grants come from.
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// How enrichers are run.
    #[serde(default)]
    pub enrichment: EnrichmentConfig,
    /// Grants by pack name.
    #[serde(default)]
    pub packs: BTreeMap<String, PackGrants>,
    /// How `vigil serve` runs (`service.rs`); other commands ignore it.
    #[serde(default)]
    pub serve: Option<ServeConfig>,
}

/// Grants for one pack.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackGrants {
    /// Grants by plugin id.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginGrant>,
}

macro_rules! plugin_grant {
    ($($name:ident: $variant:ident => $unit:ty),* $(,)?) => {
        /// What one plugin is granted: the capabilities, each one's scope
        /// (a table named after it, defined by its module), and limits.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct PluginGrant {
            /// Granted capabilities (effective only if also requested).
            #[serde(default)]
            pub capabilities: Vec<Capability>,
            /// Overrides of the default limits.
            #[serde(default)]
            pub limits: LimitsConfig,
            $(
                #[doc = concat!("Scope of the `", stringify!($name), "` grant.")]
                #[serde(default)]
                pub $name: <$unit as HostCapability>::Grant,
            )*
        }

        impl PluginGrant {
            /// The scope of `capability` as the audit log records it, or
            /// `None` when the capability has no scope.
            pub fn scope(&self, capability: Capability) -> Option<serde_json::Value> {
                let value = match capability {
                    $(Capability::$variant => serde_json::to_value(&self.$name),)*
                };
                // A scope is plain data and always serializes.
                let value = value.expect("a grant scope serializes to JSON");
                let empty = value.as_object().is_some_and(|o| o.is_empty());
                (!empty).then_some(value)
            }

            /// Every scope checked as written: `Err((capability, why))`.
            fn validate_scopes(&self) -> Result<(), (Capability, String)> {
                $(<$unit as HostCapability>::validate(&self.$name)
                    .map_err(|why| (Capability::$variant, why))?;)*
                Ok(())
            }
        }
    };
}
for_each_capability!(plugin_grant);

/// `[secrets]`: where `${NAME}` references in header grants are read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// A TOML file of `NAME = "value"` lines, read at load. Names not in
    /// it (or without a file) come from environment variables.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Limits as written in the policy; unset fields fall back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Wall-clock budget per call in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Memory cap per instance in MiB: every linear memory and table of the instance together.
    pub memory_mb: Option<u64>,
    /// Most findings one call may return.
    pub max_findings_per_batch: Option<usize>,
    /// Most bytes one call's findings (or one enrichment) may take as emitted JSON.
    pub max_output_bytes: Option<usize>,
    /// Consecutive misbehaving calls (traps, deadline overruns, the memory
    /// cap, invalid output; not error values the plugin returns) before the
    /// plugin is quarantined.
    pub quarantine_after: Option<u32>,
    /// How long a first quarantine lasts, in milliseconds, before one call
    /// probes the plugin; each failed probe doubles it, up to 10 minutes.
    pub quarantine_ms: Option<u64>,
    /// Log records allowed per call.
    pub log_records_per_call: Option<usize>,
}

/// `[enrichment]`: how findings wait for enrichers. Enrichment never holds
/// detection back: a finding waits for its enrichers at most `wait_ms`,
/// then leaves without them, saying why.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// Enricher calls in flight at once (default 8). Enrichers mostly wait
    /// on the network, so this bounds concurrent requests more than CPU:
    /// against a 3 ms service (`cargo bench -p vigil-tests --bench
    /// enrichment`), 2 workers (queue 256) left 58 % of the findings
    /// un-enriched (queue full), 4 workers (queue 1024) 11 %, 8 none.
    #[serde(default)]
    pub workers: Option<usize>,
    /// Findings that may wait for a worker (default 4096); beyond that a
    /// finding leaves un-enriched at once. Each waits at most `wait_ms`.
    #[serde(default)]
    pub queue: Option<usize>,
    /// Longest a finding waits for its enrichments, ms (default 20000,
    /// more than an enricher's default deadline).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

impl EnrichmentConfig {
    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(8).max(1)
    }
    /// Queue bound.
    pub fn queue(&self) -> usize {
        self.queue.unwrap_or(4096).max(1)
    }
    /// Longest wait of a finding for its enrichments.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms.unwrap_or(20_000).max(1))
    }
}

impl Limits {
    fn with(self, c: &LimitsConfig) -> Limits {
        Limits {
            deadline: c.deadline_ms.map_or(self.deadline, Duration::from_millis),
            memory_bytes: c
                .memory_mb
                .map_or(self.memory_bytes, |mb| mb.saturating_mul(1 << 20)),
            max_findings_per_batch: c
                .max_findings_per_batch
                .unwrap_or(self.max_findings_per_batch),
            max_output_bytes: c.max_output_bytes.unwrap_or(self.max_output_bytes),
            quarantine_after: c.quarantine_after.unwrap_or(self.quarantine_after),
            quarantine: c
                .quarantine_ms
                .map_or(self.quarantine, Duration::from_millis),
            log_records_per_call: c.log_records_per_call.unwrap_or(self.log_records_per_call),
        }
    }
}

/// A problem with the policy file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct PolicyError {
    /// The policy file.
    pub file: String,
    /// What is wrong, with position where known, and how to fix it.
    pub message: String,
}

/// Longest wait a policy may set (`wait_ms`, `quarantine_ms`): a day.
/// Guest-independent but operator-typed: bounded so `Instant + wait`
/// cannot overflow.
pub const MAX_POLICY_WAIT_MS: u64 = 24 * 3600 * 1000;

/// Default deadline of an enricher call (init, enrich and its requests).
pub const ENRICHER_DEADLINE: Duration = Duration::from_secs(15);

/// Default events per call.
pub const DEFAULT_BATCH_SIZE: usize = 256;

impl Policy {
    /// Parse and validate `text`, read from `file` (used in messages).
    pub fn parse(file: &str, text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| PolicyError {
            file: file.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        policy.validate(file)?;
        Ok(policy)
    }

    fn validate(&self, file: &str) -> Result<(), PolicyError> {
        let err = |message: String| {
            Err(PolicyError {
                file: file.to_owned(),
                message,
            })
        };
        if (self.enrichment.wait_ms).is_some_and(|ms| ms == 0 || ms > MAX_POLICY_WAIT_MS) {
            return err(format!(
                "[enrichment] wait_ms must be between 1 and {MAX_POLICY_WAIT_MS} (a day)"
            ));
        }
        if let Some(serve) = &self.serve
            && let Err(why) = serve.validate()
        {
            return err(why);
        }
        if self.batch_size == Some(0) {
            return err("`batch_size` must be at least 1".into());
        }
        if self.batch_linger_ms.is_some_and(|ms| ms > 60_000) {
            return err("`batch_linger_ms` must be at most 60000 (a minute)".into());
        }
        if self.audit.segment_mb == Some(0) {
            return err("[audit] segment_mb must be at least 1".into());
        }
        if self.audit.checkpoint_every == Some(0) {
            return err("[audit] checkpoint_every must be at least 1".into());
        }
        if let Some(bad) = (self.audit.redact.drop.iter())
            .chain(&self.audit.redact.hash)
            .find(|p| p.is_empty() || p.split('.').any(str::is_empty))
        {
            return err(format!(
                "[audit.redact] `{bad}` is not a dotted field path like `Event.EventData.User`"
            ));
        }
        for (pack, grants) in &self.packs {
            for (plugin, grant) in &grants.plugins {
                if let Err((capability, message)) = grant.validate_scopes() {
                    return err(format!(
                        "[packs.{pack}.plugins.{plugin}.{capability}] {message}"
                    ));
                }
            }
        }
        let mut all = vec![("[limits]".to_owned(), &self.limits)];
        for (pack, grants) in &self.packs {
            for (plugin, grant) in &grants.plugins {
                all.push((
                    format!("[packs.{pack}.plugins.{plugin}.limits]"),
                    &grant.limits,
                ));
            }
        }
        for (at, limits) in all {
            if let Some(mb) = limits.memory_mb
                && (mb == 0 || mb << 20 > MAX_PLUGIN_MEMORY_BYTES)
            {
                return err(format!(
                    "{at} memory_mb = {mb}: must be between 1 and {}",
                    MAX_PLUGIN_MEMORY_BYTES >> 20
                ));
            }
            if limits.deadline_ms == Some(0) {
                return err(format!("{at} deadline_ms must be at least 1"));
            }
            if limits.quarantine_after == Some(0) {
                return err(format!("{at} quarantine_after must be at least 1"));
            }
            if limits
                .quarantine_ms
                .is_some_and(|ms| ms > MAX_POLICY_WAIT_MS)
            {
                return err(format!(
                    "{at} quarantine_ms must be at most {MAX_POLICY_WAIT_MS} (a day)"
                ));
            }
            if limits.quarantine_ms == Some(0) {
                return err(format!("{at} quarantine_ms must be at least 1"));
            }
        }
        Ok(())
    }

    /// Events per call.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE)
    }

    /// State directory.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(".vigil"))
    }

    /// The audit directory: `[audit] path`, else `<state_dir>/audit`.
    pub fn audit_dir(&self, state_dir: &std::path::Path) -> PathBuf {
        self.audit
            .path
            .clone()
            .unwrap_or_else(|| state_dir.join("audit"))
    }

    /// The grant entry for a plugin, if the operator wrote one.
    pub fn grant(&self, pack: &str, plugin: &str) -> Option<&PluginGrant> {
        self.packs.get(pack)?.plugins.get(plugin)
    }

    /// Limits for a plugin: built-in defaults, then `[limits]`, then the
    /// plugin's own overrides.
    pub fn limits(&self, pack: &str, plugin: &str) -> Limits {
        let base = Limits::default().with(&self.limits);
        match self.grant(pack, plugin) {
            Some(g) => base.with(&g.limits),
            None => base,
        }
    }

    /// Limits for a plugin of `world`. An enricher waits on a network
    /// service, so its deadline defaults to [`ENRICHER_DEADLINE`] (longer
    /// than the `http` grant's default timeout) rather than `[limits]`'s,
    /// which is sized for detectors; its own `limits.deadline_ms` still
    /// sets it. The 250 ms detector default used to cap every enrichment
    /// request at 250 ms, so real services always timed out.
    pub fn limits_for(&self, pack: &str, plugin: &str, world: World) -> Limits {
        let mut limits = self.limits(pack, plugin);
        let own_deadline = self.grant(pack, plugin).and_then(|g| g.limits.deadline_ms);
        if world == World::Enricher && own_deadline.is_none() {
            limits.deadline = ENRICHER_DEADLINE;
        }
        limits
    }

    /// The largest per-instance memory cap any plugin may get under this
    /// policy (the engine's pool is sized from it).
    pub fn max_memory_bytes(&self) -> u64 {
        let base = Limits::default().with(&self.limits);
        (self.packs.values())
            .flat_map(|p| p.plugins.values())
            .map(|g| base.with(&g.limits).memory_bytes)
            .fold(base.memory_bytes, u64::max)
    }

    /// Effective capabilities: requested ∩ granted, in request order.
    pub fn effective(&self, pack: &str, plugin: &str, requested: &[Capability]) -> Vec<Capability> {
        let granted = self
            .grant(pack, plugin)
            .map(|g| g.capabilities.as_slice())
            .unwrap_or(&[]);
        requested
            .iter()
            .copied()
            .filter(|c| granted.contains(c))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
[limits]
deadline_ms = 100
[packs.p.plugins.a]
capabilities = ["log", "state"]
state = { key_prefixes = ["x/"] }
limits = { memory_mb = 16 }
"#;

    #[test]
    fn enrichers_get_a_network_sized_deadline_unless_their_own_limits_say_otherwise() {
        let text = format!("{POLICY}[packs.p.plugins.e]\nlimits = {{ deadline_ms = 700 }}\n");
        let policy = Policy::parse("vigil.toml", &text).expect("valid");
        assert_eq!(
            policy.limits_for("p", "a", World::Enricher).deadline,
            ENRICHER_DEADLINE,
            "[limits] deadline_ms is sized for detectors"
        );
        assert_eq!(
            policy.limits_for("p", "a", World::Detector).deadline,
            Duration::from_millis(100)
        );
        assert_eq!(
            policy.limits_for("p", "e", World::Enricher).deadline,
            Duration::from_millis(700)
        );
        assert_eq!(policy.max_memory_bytes(), 64 << 20);
    }

    #[test]
    fn effective_grant_is_the_intersection_of_request_and_grant() {
        let policy = Policy::parse("vigil.toml", POLICY).expect("valid");
        assert_eq!(
            policy.effective("p", "a", &[Capability::State, Capability::Clock]),
            vec![Capability::State]
        );
        assert!(
            policy
                .effective("p", "unknown", &[Capability::Log])
                .is_empty()
        );
        assert!(
            policy
                .effective("other", "a", &[Capability::Log])
                .is_empty()
        );
    }

    #[test]
    fn limits_layer_defaults_then_policy_then_plugin() {
        let policy = Policy::parse("vigil.toml", POLICY).expect("valid");
        let a = policy.limits("p", "a");
        assert_eq!(a.deadline, Duration::from_millis(100));
        assert_eq!(a.memory_bytes, 16 << 20);
        assert_eq!(
            policy.limits("p", "b").memory_bytes,
            Limits::default().memory_bytes
        );
    }

    #[test]
    fn a_state_grant_sets_the_quota_over_the_defaults() {
        use crate::state::store::StateQuota;
        let policy = Policy::parse(
            "vigil.toml",
            &POLICY.replace(
                "state = { key_prefixes = [\"x/\"] }",
                "state = { key_prefixes = [\"x/\"], max_keys = 10, max_total_bytes = 4096 }",
            ),
        )
        .expect("valid");
        let quota = policy.grant("p", "a").expect("granted").state.quota();
        assert_eq!(quota.max_keys, 10);
        assert_eq!(quota.max_total_bytes, 4096);
        assert_eq!(quota.max_value_bytes, StateQuota::default().max_value_bytes);
        let unset = Policy::parse("vigil.toml", POLICY).expect("valid");
        assert_eq!(
            unset.grant("p", "a").expect("granted").state.quota(),
            StateQuota::default()
        );
    }

    #[test]
    fn typos_and_impossible_limits_are_reported_with_location() {
        let err =
            Policy::parse("vigil.toml", &POLICY.replace("key_prefixes", "key_prefix")).unwrap_err();
        assert!(err.to_string().contains("key_prefix"), "{err}");
        let err = Policy::parse(
            "vigil.toml",
            &POLICY.replace("memory_mb = 16", "memory_mb = 999999"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("[packs.p.plugins.a.limits] memory_mb"),
            "{err}"
        );
    }

    #[test]
    fn a_scope_for_a_capability_that_has_none_is_refused_and_scopes_are_recorded_by_name() {
        let err = Policy::parse(
            "vigil.toml",
            &POLICY.replace(
                "state = { key_prefixes",
                "log = { level = \"debug\" }\nstate = { key_prefixes",
            ),
        )
        .unwrap_err();
        assert!(err.to_string().contains("level"), "{err}");
        let policy = Policy::parse("vigil.toml", POLICY).expect("valid");
        let grant = policy.grant("p", "a").expect("granted");
        assert_eq!(grant.scope(Capability::Log), None, "log has no scope");
        let state = grant.scope(Capability::State).expect("state has a scope");
        assert_eq!(state["key_prefixes"][0], "x/");
    }
}
