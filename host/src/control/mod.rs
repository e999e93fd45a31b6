//! The control plane of a long-running host: packs reloaded by
//! generations ([`reload`]) when their directory changes ([`watch`]), and
//! what an operator asks of the host's state ([`status`]).

pub mod reload;
pub mod status;
pub mod watch;
