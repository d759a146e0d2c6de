//! The Redis side: a self-healing connection (made in the background, so a
//! node starts and keeps receiving while Redis is down), and one Lua script
//! per decision.

use crate::{ClusterError, RedisSettings};
use redis::aio::ConnectionManager;
use redis::Script;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

/// Every key Ironpost writes starts with this.
const PREFIX: &str = "ironpost:";

/// GCRA in the server: the key holds the theoretical arrival time (µs, by
/// the server's clock). Returns the µs to wait (0: go now) and the µs from
/// now to the theoretical arrival time after this decision. Numbers are formatted by hand: Redis's Lua prints large
/// numbers with 14 digits, which would round a µs timestamp.
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at <= now then
  local ttl_ms = math.floor((new_tat - now) / 1000) + 1000
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
  return {'0', string.format('%.0f', new_tat - now)}
end
return {string.format('%.0f', allow_at - now), string.format('%.0f', tat - now)}
"#,
    )
});

/// GCRA for up to ARGV[3] events at once: all of them when the rate allows
/// them now, else one when it allows one. Returns the number granted (0:
/// none) and, when none, the µs to wait.
static GCRA_N: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
for _, n in ipairs({want, 1}) do
  local new_tat = tat + n * interval
  if new_tat - burst * interval <= now then
    local ttl_ms = math.floor((new_tat - now) / 1000) + 1000
    redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', string.format('%.0f', ttl_ms))
    return {n, 0}
  end
end
return {0, string.format('%.0f', tat + interval - burst * interval - now)}
"#,
    )
});

/// A lease under a connection limit: a sorted set of holders scored by
/// expiry (ms, server clock). Expired holders (a node that died) are
/// dropped first; a new holder is added only below the limit.
static LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl * 2))
  return 1
end
return 0
"#,
    )
});

/// Extends a lease that still exists; 0 when it expired meanwhile.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = tonumber(ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], string.format('%.0f', now + ttl), ARGV[2])
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', ttl * 2))
return 1
"#,
    )
});

/// Stores a hold unless its tombstone says it was cancelled.
static PUT_HOLD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[3])
return 1
"#,
    )
});

/// Drops every lease of one node (ARGV[1], the lease id prefix) from the
/// limit sets in KEYS.
static RELEASE_NODE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = 0
for _, key in ipairs(KEYS) do
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if string.sub(m, 1, string.len(ARGV[1])) == ARGV[1] then
      n = n + redis.call('ZREM', key, m)
    end
  end
end
return n
"#,
    )
});

/// Counts one failure in a fixed window starting at the first.
static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#,
    )
});

/// Round trips, errors, and decisions on shared limits, for `/metrics`.
#[derive(Default, Debug)]
pub struct RedisStats {
    pub ops: AtomicU64,
    pub errors: AtomicU64,
    /// Sum of round-trip times of successful calls, µs.
    pub rtt_us: AtomicU64,
    /// Rate decisions: allowed, and told to wait.
    pub allowed: AtomicU64,
    pub delayed: AtomicU64,
}

struct Inner {
    conn: RwLock<Option<ConnectionManager>>,
    /// Set at shutdown: leases are no longer renewed or taken again.
    closing: std::sync::atomic::AtomicBool,
    timeout: Duration,
    /// This node, in lease holder names.
    node: String,
    stats: RedisStats,
    url: String,
}

/// A handle on the shared store; cheap to clone.
#[derive(Clone)]
pub struct Redis(Arc<Inner>);

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis({})", crate::settings::redact_url(&self.0.url))
    }
}

fn client(s: &RedisSettings) -> Result<redis::Client, ClusterError> {
    use redis::IntoConnectionInfo;
    let mut info = s
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| ClusterError::Settings(format!("node: {e}")))?;
    if let Some(u) = &s.username {
        info.redis.username = Some(u.clone());
    }
    if let Some(p) = &s.password {
        info.redis.password = Some(p.clone());
    }
    redis::Client::open(info).map_err(|e| ClusterError::Settings(e.to_string()))
}

impl Redis {
    /// Check the settings and start connecting in the background (call in
    /// the runtime). Until connected, every call is an error.
    pub fn start(settings: &RedisSettings) -> Result<Redis, ClusterError> {
        let client = client(settings)?;
        let node = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into()),
            uuid::Uuid::now_v7().simple()
        );
        let r = Redis(Arc::new(Inner {
            conn: RwLock::new(None),
            closing: Default::default(),
            timeout: settings.response_timeout,
            node,
            stats: RedisStats::default(),
            url: settings.url.clone(),
        }));
        let me = r.clone();
        let connect_timeout = settings.connect_timeout;
        let response_timeout = settings.response_timeout;
        tokio::spawn(async move {
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(connect_timeout.min(Duration::from_secs(5)))
                .set_response_timeout(response_timeout)
                .set_number_of_retries(2)
                .set_max_delay(1000);
            loop {
                match ConnectionManager::new_with_config(client.clone(), cfg.clone()).await {
                    Ok(cm) => {
                        tracing::info!(
                            "redis: connected to {}",
                            crate::settings::redact_url(&me.0.url)
                        );
                        *me.0.conn.write().unwrap_or_else(|p| p.into_inner()) = Some(cm);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!("redis: cannot connect yet: {e}; shared limits wait");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(r)
    }

    pub fn stats(&self) -> &RedisStats {
        &self.0.stats
    }

    pub fn node(&self) -> &str {
        &self.0.node
    }

    fn conn(&self) -> Result<ConnectionManager, ClusterError> {
        self.0
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| ClusterError::Unavailable(crate::settings::redact_url(&self.0.url)))
    }

    /// Run `f` on a connection within the response timeout, counting it.
    async fn call<T, F>(&self, f: F) -> Result<T, ClusterError>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> redis::RedisResult<T>,
    {
        let s = &self.0.stats;
        s.ops.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let mut c = self.conn()?;
            let started = Instant::now();
            let r = tokio::time::timeout(self.0.timeout, f(&mut c))
                .await
                .map_err(|_| ClusterError::Timeout(self.0.timeout))??;
            s.rtt_us
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            Ok(r)
        }
        .await;
        if result.is_err() {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// One GCRA decision for throttle `name`: `Ok(())` to go now, or the
    /// time to wait.
    pub async fn gcra(
        &self,
        name: &str,
        interval: Duration,
        burst: u64,
    ) -> Result<Result<(), Duration>, ClusterError> {
        Ok(
            match self.decide(name, interval, burst).await?.retry_after {
                None => Ok(()),
                Some(d) => Err(d),
            },
        )
    }

    /// Up to `want` events of throttle `name` at once (fewer when the rate
    /// allows only one now): the number granted, or the time to wait.
    pub async fn gcra_take(
        &self,
        name: &str,
        interval: Duration,
        burst: u64,
        want: u64,
    ) -> Result<Result<u64, Duration>, ClusterError> {
        let key = format!("{PREFIX}rate:{name}");
        let interval_us = interval.as_micros().max(1) as u64;
        let (granted, wait): (u64, u64) = self
            .call(async |c| {
                GCRA_N
                    .key(&key)
                    .arg(interval_us)
                    .arg(burst.max(1))
                    .arg(want.clamp(1, burst.max(1)))
                    .invoke_async(c)
                    .await
            })
            .await?;
        let s = &self.0.stats;
        if granted > 0 {
            s.allowed.fetch_add(granted, Ordering::Relaxed);
            Ok(Ok(granted))
        } else {
            s.delayed.fetch_add(1, Ordering::Relaxed);
            Ok(Err(Duration::from_micros(wait.max(1))))
        }
    }

    /// One GCRA decision for throttle `name`, with its numbers.
    pub async fn decide(
        &self,
        name: &str,
        interval: Duration,
        burst: u64,
    ) -> Result<crate::Decision, ClusterError> {
        let key = format!("{PREFIX}rate:{name}");
        let interval_us = interval.as_micros().max(1) as u64;
        let (wait, ahead): (u64, u64) = self
            .call(async |c| {
                GCRA.key(&key)
                    .arg(interval_us)
                    .arg(burst.max(1))
                    .invoke_async(c)
                    .await
            })
            .await?;
        let s = &self.0.stats;
        let retry_after = if wait == 0 {
            s.allowed.fetch_add(1, Ordering::Relaxed);
            None
        } else {
            s.delayed.fetch_add(1, Ordering::Relaxed);
            Some(Duration::from_micros(wait))
        };
        Ok(crate::Decision::from_parts(
            retry_after,
            Duration::from_micros(ahead),
            interval,
            burst.max(1),
        ))
    }

    /// A slot under connection limit `name` (at most `limit` holders across
    /// the cluster), held for `ttl` unless renewed; `None` when full.
    pub async fn lease(
        &self,
        name: &str,
        limit: usize,
        ttl: Duration,
    ) -> Result<Option<Lease>, ClusterError> {
        let key = format!("{PREFIX}limit:{name}");
        let id = format!("{}-{}", self.0.node, uuid::Uuid::now_v7().simple());
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let got: u64 = self
            .call(async |c| {
                LEASE
                    .key(&key)
                    .arg(limit)
                    .arg(ttl_ms)
                    .arg(&id)
                    .invoke_async(c)
                    .await
            })
            .await?;
        if got == 0 {
            return Ok(None);
        }
        let me = self.clone();
        let (k, i) = (key.clone(), id.clone());
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = lost.clone();
        // Renewed well before it would lapse; if renewal keeps failing the
        // lease expires, which is what a dead node's leases do. A lease
        // Redis no longer has (it restarted, or was away longer than the
        // lease) is taken again when there is room, and marked lost while
        // there is none: the connection under it must then close.
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if me.0.closing.load(Ordering::SeqCst) {
                    return;
                }
                let renewed = me
                    .call(async |c| {
                        RENEW
                            .key(&k)
                            .arg(ttl_ms)
                            .arg(&i)
                            .invoke_async::<u64>(c)
                            .await
                    })
                    .await;
                let held = match renewed {
                    Ok(1) => true,
                    Ok(_) => me
                        .call(async |c| {
                            LEASE
                                .key(&k)
                                .arg(limit)
                                .arg(ttl_ms)
                                .arg(&i)
                                .invoke_async::<u64>(c)
                                .await
                        })
                        .await
                        .is_ok_and(|n| n == 1),
                    Err(e) => {
                        tracing::warn!("redis: cannot renew the lease on {k}: {e}");
                        continue;
                    }
                };
                if !held && !flag.swap(true, Ordering::SeqCst) {
                    tracing::warn!("redis: the lease {i} on {k} lapsed and the limit is full");
                }
                if held {
                    flag.store(false, Ordering::SeqCst);
                }
            }
        });
        Ok(Some(Lease {
            redis: self.clone(),
            key,
            id,
            renew,
            lost,
        }))
    }

    /// Give back every slot this node holds under the connection limits
    /// `names`, and renew none from now on (at shutdown: the other nodes
    /// need not wait for the leases to expire). Returns how many.
    pub async fn release_all(&self, names: &[String]) -> Result<u64, ClusterError> {
        if names.is_empty() {
            return Ok(0);
        }
        self.0.closing.store(true, Ordering::SeqCst);
        let prefix = format!("{}-", self.0.node);
        self.call(async |c| {
            let mut inv = RELEASE_NODE.prepare_invoke();
            for n in names {
                inv.key(format!("{PREFIX}limit:{n}"));
            }
            inv.arg(&prefix).invoke_async(c).await
        })
        .await
    }

    /// The holders of connection limit `name`, with their expiry (Unix ms).
    pub async fn holders(&self, name: &str) -> Result<Vec<(String, u64)>, ClusterError> {
        let key = format!("{PREFIX}limit:{name}");
        let v: Vec<(String, f64)> = self
            .call(async |c| {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(c)
                    .await
            })
            .await?;
        Ok(v.into_iter().map(|(h, s)| (h, s as u64)).collect())
    }

    /// Count a failure for `key` in a window of `window` from the first;
    /// returns the count.
    pub async fn count(&self, key: &str, window: Duration) -> Result<u64, ClusterError> {
        let key = format!("{PREFIX}count:{key}");
        let ms = window.as_millis().max(1) as u64;
        self.call(async |c| COUNT.key(&key).arg(ms).invoke_async(c).await)
            .await
    }

    /// The count of `key` (0 when none or expired).
    pub async fn counted(&self, key: &str) -> Result<u64, ClusterError> {
        let key = format!("{PREFIX}count:{key}");
        let v: Option<u64> = self
            .call(async |c| redis::cmd("GET").arg(&key).query_async(c).await)
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// Store shared hold `id` (JSON), unless it was cancelled (its
    /// tombstone refuses it); bumps the version the other nodes poll.
    /// Whether it was stored.
    pub async fn put_hold(&self, id: &str, json: &str) -> Result<bool, ClusterError> {
        let n: u64 = self
            .call(async |c| {
                PUT_HOLD
                    .key(format!("{PREFIX}holds"))
                    .key(format!("{PREFIX}holds:cancelled"))
                    .key(format!("{PREFIX}holds:version"))
                    .arg(id)
                    .arg(json)
                    .invoke_async(c)
                    .await
            })
            .await?;
        Ok(n == 1)
    }

    /// Cancel shared hold `id` everywhere: deleted, and a tombstone kept
    /// until `until` (Unix s) so no node can put it back.
    pub async fn cancel_hold(&self, id: &str, until: u64) -> Result<(), ClusterError> {
        let (h, t, v) = (
            format!("{PREFIX}holds"),
            format!("{PREFIX}holds:cancelled"),
            format!("{PREFIX}holds:version"),
        );
        self.call(async |c| {
            redis::pipe()
                .atomic()
                .hdel(&h, id)
                .ignore()
                .hset(&t, id, until)
                .ignore()
                .incr(&v, 1)
                .ignore()
                .query_async::<()>(c)
                .await
        })
        .await
    }

    /// Forget holds that ended (and their tombstones): no node needs them.
    pub async fn forget_holds(
        &self,
        ended: &[String],
        tombstones: &[String],
    ) -> Result<(), ClusterError> {
        if ended.is_empty() && tombstones.is_empty() {
            return Ok(());
        }
        let (h, t) = (format!("{PREFIX}holds"), format!("{PREFIX}holds:cancelled"));
        self.call(async |c| {
            let mut p = redis::pipe();
            for id in ended {
                p.hdel(&h, id).ignore();
            }
            for id in tombstones {
                p.hdel(&t, id).ignore();
            }
            p.query_async::<()>(c).await
        })
        .await
    }

    /// The holds version: changes whenever a hold is stored or cancelled.
    pub async fn holds_version(&self) -> Result<u64, ClusterError> {
        let v = format!("{PREFIX}holds:version");
        let n: Option<u64> = self
            .call(async |c| redis::cmd("GET").arg(&v).query_async(c).await)
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Every shared hold (id → JSON) and every tombstone (id → Unix s it
    /// may go).
    #[allow(clippy::type_complexity)]
    pub async fn holds(&self) -> Result<(Vec<(String, String)>, Vec<(String, u64)>), ClusterError> {
        let (h, t) = (format!("{PREFIX}holds"), format!("{PREFIX}holds:cancelled"));
        self.call(async |c| {
            redis::pipe()
                .cmd("HGETALL")
                .arg(&h)
                .cmd("HGETALL")
                .arg(&t)
                .query_async(c)
                .await
        })
        .await
    }
}

/// A slot under a shared connection limit; released when dropped.
pub struct Lease {
    redis: Redis,
    key: String,
    id: String,
    renew: tokio::task::JoinHandle<()>,
    lost: Arc<std::sync::atomic::AtomicBool>,
}

impl Lease {
    /// Redis no longer counts this slot for us, and has no room to: the
    /// holder must stop using it.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Lease({} on {})", self.id, self.key)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        let (r, k, i) = (self.redis.clone(), self.key.clone(), self.id.clone());
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                // If this fails the lease expires by itself.
                let _ = r
                    .call(async |c| {
                        redis::cmd("ZREM")
                            .arg(&k)
                            .arg(&i)
                            .query_async::<u64>(c)
                            .await
                    })
                    .await;
            });
        }
    }
}
