//! What Ironpost nodes share through Redis once the policy calls
//! `kumo.configure_redis_throttles`: GCRA rates, connection leases, holds
//! (suspensions, automation) and AUTH failure counts.
//!
//! Every decision is one server-side script, so it is atomic and uses the
//! Redis server's clock, never a read-modify-write from a client. Every
//! call has a short timeout. A caller that gets an error must not go ahead
//! as if unthrottled: delivery waits and tries again, AUTH falls back to
//! its node-local counts.

pub mod gcra;
mod redis_store;
mod settings;

pub use gcra::{Decision, Gcra};
pub use redis_store::{Lease, Redis, RedisStats};
pub use settings::RedisSettings;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis is not connected yet ({0})")]
    Unavailable(String),
    #[error("redis did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis settings: {0}")]
    Settings(String),
}
