//! Plugins' persistent state: the `state` capability's stores.
//!
//! - [`store`]: one plugin's store (redb, quotas, TTL; detectors' writes
//!   committed only after the audit log holds them);
//! - [`stores`]: one store per plugin identity, shared by generations;
//! - [`recovery`]: bringing stores forward from the audit log at start.

pub mod recovery;
pub mod store;
pub mod stores;
