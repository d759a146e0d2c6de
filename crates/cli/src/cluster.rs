//! `kumo.configure_redis_throttles`: the connection to the Redis that
//! nodes share rates, limits and holds through.

use ironpost_cluster::{Redis, RedisSettings};
use ironpost_policy::delivery_config::{RedisPassword, RedisThrottles};
use std::time::Duration;

/// Decisions wait at most this long for Redis unless the policy says
/// `response_timeout`: slow is treated as down, and the work waits.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_millis(200);

/// Check the settings, load the password, and start connecting (in the
/// background: a node starts, and receives, while Redis is down).
pub async fn connect(r: &RedisThrottles) -> anyhow::Result<Redis> {
    let url = r
        .node_url()
        .map_err(|e| anyhow::anyhow!("kumo.configure_redis_throttles: {e}"))?
        .to_string();
    let password = match r.password.clone() {
        None => None,
        Some(RedisPassword::Text(t)) => Some(t),
        Some(RedisPassword::Source(ks)) => {
            let secret = tokio::task::spawn_blocking(move || ks.load())
                .await?
                .map_err(|e| anyhow::anyhow!("kumo.configure_redis_throttles: password: {e}"))?;
            Some(String::from_utf8(secret.expose().to_vec()).map_err(|_| {
                anyhow::anyhow!("kumo.configure_redis_throttles: password: not UTF-8")
            })?)
        }
    };
    for opt in r.without_effect() {
        tracing::info!(
            "kumo.configure_redis_throttles: {opt} has no effect: Ironpost multiplexes one connection"
        );
    }
    let settings = RedisSettings {
        url,
        username: r.username.clone(),
        password,
        connect_timeout: r.connect_timeout.unwrap_or(Duration::from_secs(30)),
        response_timeout: r.response_timeout.unwrap_or(DEFAULT_RESPONSE_TIMEOUT),
    };
    let redis = Redis::start(&settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!("rates, connection limits and holds are shared through {redis:?}");
    Ok(redis)
}
