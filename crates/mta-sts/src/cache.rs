//! Policies cached on disk so they survive restarts (RFC 8461 §5.1: a
//! policy stays in force until it expires, even if the TXT record or the
//! policy host later disappears — which is what defeats a downgrade by
//! an attacker who blocks discovery).
//!
//! One JSON file per domain, named after the validated, lower-cased
//! domain. Entries are read from disk on first use and kept in memory.

/// Bound on the in-memory map: it also remembers domains without a policy.
const MAX_MEMORY_ENTRIES: usize = 100_000;

use crate::domain;
use crate::policy::Policy;
use crate::StsError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Cache files are tiny; anything much bigger is not ours.
const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// One cached policy, as stored on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedPolicy {
    /// The policy domain, normalised.
    pub domain: String,
    /// The TXT record `id` the policy was fetched for.
    pub id: String,
    pub policy: Policy,
    /// Unix seconds.
    pub fetched_at: u64,
    /// Unix seconds: `fetched_at + policy.max_age`.
    pub expires_at: u64,
}

impl CachedPolicy {
    pub fn new(domain: &str, id: &str, policy: Policy, now: u64) -> CachedPolicy {
        CachedPolicy {
            domain: domain.to_string(),
            id: id.to_string(),
            expires_at: now.saturating_add(policy.max_age),
            policy,
            fetched_at: now,
        }
    }

    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at <= now
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The cache directory plus its in-memory copy.
pub(crate) struct PolicyCache {
    dir: PathBuf,
    /// `None` records "no file on disk", so misses are not re-read.
    mem: Mutex<HashMap<String, Option<Arc<CachedPolicy>>>>,
}

impl PolicyCache {
    /// Creates the directory (0700) if needed.
    pub(crate) fn open(dir: PathBuf) -> Result<PolicyCache, StsError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| StsError::Cache {
                path: dir.clone(),
                source,
            })?;
        Ok(PolicyCache {
            dir,
            mem: Mutex::new(HashMap::new()),
        })
    }

    fn path(&self, domain: &str) -> PathBuf {
        // `domain` is normalised (LDH only), so this stays in `dir`.
        self.dir.join(format!("{domain}.json"))
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<Arc<CachedPolicy>>>> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The unexpired policy for `domain` (normalised), loading it from
    /// disk on first use. Expired, unreadable or corrupt entries are
    /// removed.
    pub(crate) async fn get(&self, domain: &str) -> Option<Arc<CachedPolicy>> {
        let known = self.mem().get(domain).cloned();
        let entry = match known {
            Some(e) => e,
            None => {
                let path = self.path(domain);
                let name = domain.to_string();
                let loaded = blocking(move || load(&path, &name)).await;
                let entry = match loaded {
                    Ok(e) => e.map(Arc::new),
                    Err(e) => {
                        tracing::warn!("MTA-STS cache for {domain}: {e}; discarding it");
                        let _ = self.remove(domain).await;
                        None
                    }
                };
                let mut mem = self.mem();
                if mem.len() >= MAX_MEMORY_ENTRIES {
                    // Misses (domains without a policy) are cheap to look
                    // up again; policies are kept if they fit, and are on
                    // disk anyway.
                    mem.retain(|_, e| e.is_some());
                    if mem.len() >= MAX_MEMORY_ENTRIES {
                        mem.clear();
                    }
                }
                mem.insert(domain.to_string(), entry.clone());
                entry
            }
        };
        match entry {
            Some(e) if e.is_expired(now_unix()) => {
                tracing::debug!("MTA-STS cached policy for {domain} expired");
                if let Err(err) = self.remove(domain).await {
                    tracing::warn!("{err}");
                }
                None
            }
            other => other,
        }
    }

    /// Stores `entry` on disk (atomically) and in memory.
    pub(crate) async fn put(&self, entry: CachedPolicy) -> Result<Arc<CachedPolicy>, StsError> {
        let entry = Arc::new(entry);
        // Memory first: even if the disk write fails, this process uses
        // the policy it just fetched.
        self.mem().insert(entry.domain.clone(), Some(entry.clone()));
        let json = serde_json::to_vec_pretty(&*entry).expect("policy serialises");
        let path = self.path(&entry.domain);
        let dir = self.dir.clone();
        blocking(move || {
            write_atomic(&dir, &path, &json).map_err(|source| StsError::Cache { path, source })
        })
        .await?;
        Ok(entry)
    }

    /// Forgets `domain` in memory and on disk.
    pub(crate) async fn remove(&self, domain: &str) -> Result<(), StsError> {
        self.mem().insert(domain.to_string(), None);
        let path = self.path(domain);
        let dir = self.dir.clone();
        blocking(move || match fs::remove_file(&path) {
            Ok(()) => sync_dir(&dir).map_err(|source| StsError::Cache { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StsError::Cache { path, source }),
        })
        .await
    }
}

/// Runs file I/O (fsync can take a while) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .expect("cache I/O task panicked")
}

fn load(path: &Path, domain: &str) -> Result<Option<CachedPolicy>, String> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!("{}: too large", path.display()));
    }
    let entry: CachedPolicy =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    // The file name is trusted only as far as its contents agree.
    if domain::normalize(&entry.domain).as_deref() != Some(domain) || entry.domain != domain {
        return Err(format!(
            "{}: holds domain {:?}",
            path.display(),
            entry.domain
        ));
    }
    if !(1..=32).contains(&entry.id.len()) || !entry.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!("{}: bad id", path.display()));
    }
    entry
        .policy
        .validate()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(entry))
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Write a temporary file (0600), fsync it, rename it over `path` and
/// fsync the directory, so a crash leaves either the old or the new
/// policy, never a torn one.
fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::other("bad cache file name"))?;
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Mode;
    use std::os::unix::fs::PermissionsExt;

    fn policy(max_age: u64) -> Policy {
        Policy {
            mode: Mode::Enforce,
            mx: vec!["mx.example.com".into()],
            max_age,
        }
    }

    #[tokio::test]
    async fn put_get_remove_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PolicyCache::open(dir.path().join("sts")).unwrap();
        assert!(cache.get("example.com").await.is_none());
        let e = CachedPolicy::new("example.com", "id1", policy(3600), now_unix());
        cache.put(e.clone()).await.unwrap();
        let file = dir.path().join("sts/example.com.json");
        let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(*cache.get("example.com").await.unwrap(), e);

        // A second cache on the same directory reads it back lazily.
        let again = PolicyCache::open(dir.path().join("sts")).unwrap();
        assert_eq!(*again.get("example.com").await.unwrap(), e);

        again.remove("example.com").await.unwrap();
        assert!(!file.exists());
        assert!(again.get("example.com").await.is_none());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(dir.path().join("sts")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn expired_and_corrupt_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = PolicyCache::open(dir.path().to_path_buf()).unwrap();
        let old = CachedPolicy::new("old.example", "id1", policy(10), now_unix() - 100);
        cache.put(old).await.unwrap();
        assert!(cache.get("old.example").await.is_none());
        assert!(!dir.path().join("old.example.json").exists());

        fs::write(dir.path().join("bad.example.json"), b"{not json").unwrap();
        assert!(cache.get("bad.example").await.is_none());
        assert!(!dir.path().join("bad.example.json").exists());

        // A file whose contents name another domain is not trusted.
        let other = CachedPolicy::new("other.example", "id1", policy(3600), now_unix());
        fs::write(
            dir.path().join("liar.example.json"),
            serde_json::to_vec(&other).unwrap(),
        )
        .unwrap();
        assert!(cache.get("liar.example").await.is_none());
    }
}
