//! Operator suspensions: delivery held for a destination domain, a tenant,
//! a campaign or an egress source until a time. They are kept in a file
//! (`suspensions.json` in the spool directory, replaced atomically and
//! fsynced on every change), so a restart does not lift them.

use crate::model::QueuedPart;
use crate::queue_manager::lock;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a suspension holds back; `None` fields match everything, but at
/// least one is set.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    /// An egress source: its pools pick another source meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Suspension {
    pub id: u64,
    #[serde(flatten)]
    pub scope: Scope,
    /// Unix time (seconds) the suspension ends.
    pub until: u64,
    pub reason: String,
    #[serde(default)]
    pub requested_by: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    next_id: u64,
    suspensions: Vec<Suspension>,
}

pub struct Suspensions {
    state: Mutex<File>,
    path: Option<PathBuf>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Suspensions {
    /// In memory only (tools and tests without a spool).
    pub fn ephemeral() -> Suspensions {
        Suspensions {
            state: Mutex::new(File::default()),
            path: None,
        }
    }

    /// Those in `path` that have not ended; a file that cannot be read is
    /// an error (a suspension silently lifted would deliver what an
    /// operator held).
    pub fn load(path: PathBuf) -> Result<Suspensions, String> {
        let mut file = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<File>(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let t = now();
        file.suspensions.retain(|s| s.until > t);
        Ok(Suspensions {
            state: Mutex::new(file),
            path: Some(path),
        })
    }

    fn save(&self, file: &File) -> Result<(), String> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        write_atomically(
            path,
            &serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?,
        )
        .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Adds one (in force only once it is on disk).
    pub fn add(
        &self,
        scope: Scope,
        duration: Duration,
        reason: String,
        requested_by: String,
    ) -> Result<Suspension, String> {
        let mut file = lock(&self.state);
        let t = now();
        file.suspensions.retain(|s| s.until > t);
        file.next_id += 1;
        let s = Suspension {
            id: file.next_id,
            scope,
            until: t.saturating_add(duration.as_secs().max(1)),
            reason,
            requested_by,
        };
        file.suspensions.push(s.clone());
        if let Err(e) = self.save(&file) {
            file.suspensions.pop();
            return Err(e);
        }
        Ok(s)
    }

    /// Ends one early; false when there is no such suspension.
    pub fn cancel(&self, id: u64) -> Result<bool, String> {
        let mut file = lock(&self.state);
        let before = file.suspensions.clone();
        file.suspensions.retain(|s| s.id != id);
        if file.suspensions.len() == before.len() {
            return Ok(false);
        }
        if let Err(e) = self.save(&file) {
            file.suspensions = before;
            return Err(e);
        }
        Ok(true)
    }

    /// Those in force.
    pub fn active(&self) -> Vec<Suspension> {
        let t = now();
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| s.until > t)
            .cloned()
            .collect()
    }

    /// How long a part's queue stays suspended (domain, tenant, campaign).
    pub(crate) fn part_remaining(&self, part: &QueuedPart) -> Option<Duration> {
        let t = now();
        let tenant = part.msg.tenant();
        let campaign = part.msg.campaign();
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| s.until > t && s.scope.source.is_none())
            .filter(|s| {
                let sc = &s.scope;
                sc.domain
                    .as_deref()
                    .is_none_or(|d| part.domain.eq_ignore_ascii_case(d))
                    && sc
                        .tenant
                        .as_deref()
                        .is_none_or(|x| tenant.as_deref() == Some(x))
                    && sc
                        .campaign
                        .as_deref()
                        .is_none_or(|x| campaign.as_deref() == Some(x))
            })
            .map(|s| Duration::from_secs(s.until - t))
            .max()
    }

    /// How long an egress source stays suspended.
    pub fn source_remaining(&self, source: &str) -> Option<Duration> {
        let t = now();
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| s.until > t && s.scope.source.as_deref() == Some(source))
            .map(|s| Duration::from_secs(s.until - t))
            .max()
    }
}

/// Write a temporary file, fsync it, rename it over `path`, fsync the
/// directory: after a crash the file is the old one or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspensions_survive_a_reload_and_can_be_cancelled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suspensions.json");
        let s = Suspensions::load(path.clone()).unwrap();
        let a = s
            .add(
                Scope {
                    domain: Some("example.com".into()),
                    ..Default::default()
                },
                Duration::from_secs(3600),
                "complaints".into(),
                "admin".into(),
            )
            .unwrap();
        let b = s
            .add(
                Scope {
                    source: Some("ip-1".into()),
                    ..Default::default()
                },
                Duration::from_secs(60),
                "warming".into(),
                "admin".into(),
            )
            .unwrap();
        assert_ne!(a.id, b.id);
        let again = Suspensions::load(path.clone()).unwrap();
        assert_eq!(again.active(), vec![a.clone(), b.clone()]);
        assert!(again.source_remaining("ip-1").is_some());
        assert!(again.source_remaining("ip-2").is_none());
        assert!(again.cancel(a.id).unwrap());
        assert!(!again.cancel(a.id).unwrap());
        let third = Suspensions::load(path.clone()).unwrap();
        assert_eq!(third.active(), vec![b]);
        // New ids never reuse a cancelled one.
        let c = third
            .add(
                Scope::default(),
                Duration::from_secs(1),
                "x".into(),
                String::new(),
            )
            .unwrap();
        assert!(c.id > a.id);
        std::fs::write(&path, b"{ not json").unwrap();
        let Err(e) = Suspensions::load(path) else {
            panic!("a damaged file is an error")
        };
        assert!(e.contains("suspensions.json"), "{e}");
    }
}
