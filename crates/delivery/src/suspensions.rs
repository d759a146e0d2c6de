//! Holds on delivery until a time: suspensions (for a destination domain, a
//! tenant, a campaign, an egress source, or a source's path to one site),
//! and, from traffic-shaping automation, egress path overrides and bounces.
//! Operators and automation rules make them. They are kept in a file
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
    /// With `source`: only that source's path to this site (MX hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
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
    /// The automation rule that made it (it is renewed, not repeated, when
    /// the rule fires again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Its name in Redis when holds are shared between nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<String>,
}

/// An automation `SetConfig`: `name = value` in the egress path of
/// `source` to `site` (or to `domain`) until a time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigOverride {
    pub id: u64,
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub name: String,
    pub value: serde_json::Value,
    pub until: u64,
    pub reason: String,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<String>,
}

/// An automation `Bounce`: queued mail for the scope (domain, and tenant
/// and campaign where set) is bounced until a time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BounceHold {
    pub id: u64,
    #[serde(flatten)]
    pub scope: Scope,
    pub until: u64,
    pub reason: String,
    pub rule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_key: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    pub(crate) next_id: u64,
    pub(crate) suspensions: Vec<Suspension>,
    #[serde(default)]
    pub(crate) overrides: Vec<ConfigOverride>,
    #[serde(default)]
    pub(crate) bounces: Vec<BounceHold>,
}

impl File {
    /// The shared keys of the holds with local id `id`, with their ends.
    fn keys_of(&self, id: u64) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut add = |key: &Option<String>, until: u64| {
            if let Some(k) = key {
                out.push((k.clone(), until));
            }
        };
        for x in self.suspensions.iter().filter(|x| x.id == id) {
            add(&x.shared_key, x.until);
        }
        for x in self.overrides.iter().filter(|x| x.id == id) {
            add(&x.shared_key, x.until);
        }
        for x in self.bounces.iter().filter(|x| x.id == id) {
            add(&x.shared_key, x.until);
        }
        out
    }

    fn prune(&mut self, t: u64) {
        self.suspensions.retain(|s| s.until > t);
        self.overrides.retain(|s| s.until > t);
        self.bounces.retain(|s| s.until > t);
    }
}

pub struct Suspensions {
    state: Mutex<File>,
    path: Option<PathBuf>,
    /// This node's name when holds are shared (see [`crate::shared_holds`]).
    pub(crate) node: Mutex<Option<String>>,
    /// Shared holds cancelled here, to delete from Redis (with the time
    /// their tombstone may go).
    pub(crate) deleted: Mutex<Vec<(String, u64)>>,
    /// Shared holds made or changed here that Redis does not have yet.
    pub(crate) pending: Mutex<std::collections::HashSet<String>>,
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
            node: Mutex::new(None),
            deleted: Mutex::new(Vec::new()),
            pending: Default::default(),
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
        file.prune(now());
        // Shared holds kept here go to Redis again (unless cancelled there
        // meanwhile: its tombstone refuses them).
        let pending = file
            .suspensions
            .iter()
            .filter_map(|x| x.shared_key.clone())
            .chain(file.overrides.iter().filter_map(|x| x.shared_key.clone()))
            .chain(file.bounces.iter().filter_map(|x| x.shared_key.clone()))
            .collect();
        Ok(Suspensions {
            state: Mutex::new(file),
            path: Some(path),
            node: Mutex::new(None),
            deleted: Mutex::new(Vec::new()),
            pending: Mutex::new(pending),
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

    /// Unix time `d` from now.
    pub(crate) fn until(d: Duration) -> u64 {
        now().saturating_add(d.as_secs().max(1))
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
        file.prune(t);
        file.next_id += 1;
        let s = Suspension {
            id: file.next_id,
            scope,
            until: t.saturating_add(duration.as_secs().max(1)),
            reason,
            requested_by,
            rule: None,
            shared_key: self.new_key(file.next_id),
        };
        file.suspensions.push(s.clone());
        if let Err(e) = self.save(&file) {
            file.suspensions.pop();
            return Err(e);
        }
        if let Some(k) = &s.shared_key {
            self.to_publish(k.clone());
        }
        Ok(s)
    }

    /// Ends one early (a suspension, an override or a bounce); false when
    /// there is no such id.
    pub fn cancel(&self, id: u64) -> Result<bool, String> {
        let mut gone = Vec::new();
        let done = self.change(|f| {
            let before = f.suspensions.len() + f.overrides.len() + f.bounces.len();
            gone.extend(f.keys_of(id));
            f.suspensions.retain(|s| s.id != id);
            f.overrides.retain(|s| s.id != id);
            f.bounces.retain(|s| s.id != id);
            before != f.suspensions.len() + f.overrides.len() + f.bounces.len()
        })?;
        if done {
            lock(&self.deleted).extend(gone);
        }
        Ok(done)
    }

    /// Apply `f`, and save when it says it changed something; a failed save
    /// leaves the state as it was.
    fn change<R: Into<bool> + Copy>(&self, f: impl FnOnce(&mut File) -> R) -> Result<R, String> {
        let mut file = lock(&self.state);
        let before = serde_json::to_vec(&*file).map_err(|e| e.to_string())?;
        file.prune(now());
        let r = f(&mut file);
        if r.into() {
            if let Err(e) = self.save(&file) {
                *file = serde_json::from_slice(&before).map_err(|e| e.to_string())?;
                return Err(e);
            }
        }
        Ok(r)
    }

    /// What an automation rule's action holds, renewed rather than repeated
    /// when the same rule fires again for the same place.
    pub(crate) fn automation(&self, hold: AutoHold, until: u64) -> Result<bool, String> {
        let key = |id| self.new_key(id);
        // Saved (and shared) only when it changed: a rule that fires many
        // times a second renews at most once a second.
        let mut publish: Option<String> = None;
        let r = self.change(|f| {
            let id = f.next_id + 1;
            let (changed, k) = match hold {
                AutoHold::Suspend {
                    scope,
                    reason,
                    rule,
                } => match f
                    .suspensions
                    .iter_mut()
                    .find(|s| s.scope == scope && s.rule.as_deref() == Some(rule.as_str()))
                {
                    Some(s) => (renew(&mut s.until, until), s.shared_key.clone()),
                    None => {
                        f.suspensions.push(Suspension {
                            id,
                            scope,
                            until,
                            reason,
                            requested_by: "automation".into(),
                            rule: Some(rule),
                            shared_key: key(id),
                        });
                        f.next_id = id;
                        (true, key(id))
                    }
                },
                AutoHold::Override(mut o) => match f.overrides.iter_mut().find(|x| {
                    x.rule == o.rule
                        && x.source == o.source
                        && x.site == o.site
                        && x.domain == o.domain
                        && x.name == o.name
                }) {
                    Some(x) => {
                        let value_changed = x.value != o.value;
                        x.value = o.value;
                        (
                            renew(&mut x.until, until) || value_changed,
                            x.shared_key.clone(),
                        )
                    }
                    None => {
                        o.id = id;
                        o.until = until;
                        o.shared_key = key(id);
                        f.overrides.push(o);
                        f.next_id = id;
                        (true, key(id))
                    }
                },
                AutoHold::Bounce(mut b) => match f
                    .bounces
                    .iter_mut()
                    .find(|x| x.rule == b.rule && x.scope == b.scope)
                {
                    Some(x) => (renew(&mut x.until, until), x.shared_key.clone()),
                    None => {
                        b.id = id;
                        b.until = until;
                        b.shared_key = key(id);
                        f.bounces.push(b);
                        f.next_id = id;
                        (true, key(id))
                    }
                },
            };
            if changed {
                publish = k;
            }
            changed
        });
        if let Some(k) = publish {
            self.to_publish(k);
        }
        r
    }

    /// Change the holds with `f` (true: something changed, save it).
    pub(crate) fn merge_with(&self, f: impl FnOnce(&mut File) -> bool) -> Result<bool, String> {
        self.change(f)
    }

    /// The holds in force: suspensions, overrides, bounces.
    pub(crate) fn snapshot(&self) -> (Vec<Suspension>, Vec<ConfigOverride>, Vec<BounceHold>) {
        (self.active(), self.overrides(), self.bounces())
    }

    /// A new hold's Redis name, when holds are shared.
    fn new_key(&self, id: u64) -> Option<String> {
        lock(&self.node).as_ref().map(|n| format!("{n}-{id}"))
    }

    /// Have the shared-holds task put this hold into Redis.
    pub(crate) fn to_publish(&self, key: String) {
        lock(&self.pending).insert(key);
    }

    /// Overrides in force.
    pub fn overrides(&self) -> Vec<ConfigOverride> {
        let t = now();
        lock(&self.state)
            .overrides
            .iter()
            .filter(|s| s.until > t)
            .cloned()
            .collect()
    }

    /// Automation bounces in force.
    pub fn bounces(&self) -> Vec<BounceHold> {
        let t = now();
        lock(&self.state)
            .bounces
            .iter()
            .filter(|s| s.until > t)
            .cloned()
            .collect()
    }

    /// The reason a part is to be bounced now, if a bounce holds it.
    pub(crate) fn bounce_reason(&self, part: &QueuedPart) -> Option<String> {
        let t = now();
        lock(&self.state)
            .bounces
            .iter()
            .find(|b| b.until > t && scope_holds(&b.scope, part))
            .map(|b| b.reason.clone())
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
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| s.until > t && s.scope.source.is_none() && s.scope.site.is_none())
            .filter(|s| scope_holds(&s.scope, part))
            .map(|s| Duration::from_secs(s.until - t))
            .max()
    }

    /// How long an egress source stays suspended.
    pub fn source_remaining(&self, source: &str) -> Option<Duration> {
        let t = now();
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| {
                s.until > t && s.scope.source.as_deref() == Some(source) && s.scope.site.is_none()
            })
            .map(|s| Duration::from_secs(s.until - t))
            .max()
    }

    /// How long a source's path to `site` stays suspended (by the source
    /// as a whole, or for that site).
    pub fn path_remaining(&self, source: &str, site: &str) -> Option<Duration> {
        let t = now();
        lock(&self.state)
            .suspensions
            .iter()
            .filter(|s| {
                s.until > t
                    && s.scope.source.as_deref() == Some(source)
                    && s.scope.site.as_deref().is_none_or(|x| x == site)
            })
            .map(|s| Duration::from_secs(s.until - t))
            .max()
    }
}

/// Move `until` later; whether it moved.
fn renew(until: &mut u64, to: u64) -> bool {
    let moved = to > *until;
    *until = (*until).max(to);
    moved
}

/// An automation hold to record.
pub(crate) enum AutoHold {
    Suspend {
        scope: Scope,
        reason: String,
        rule: String,
    },
    Override(ConfigOverride),
    Bounce(BounceHold),
}

/// Whether a domain/tenant/campaign scope covers a part.
fn scope_holds(sc: &Scope, part: &QueuedPart) -> bool {
    sc.domain
        .as_deref()
        .is_none_or(|d| part.domain.eq_ignore_ascii_case(d))
        && sc
            .tenant
            .as_deref()
            .is_none_or(|x| part.msg.tenant().as_deref() == Some(x))
        && sc
            .campaign
            .as_deref()
            .is_none_or(|x| part.msg.campaign().as_deref() == Some(x))
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

    /// An automation rule that fires again renews its hold instead of
    /// adding another; holds of each kind survive a reload and cancel by
    /// id; a path suspension holds that source for that site only.
    #[test]
    fn automation_holds_renew_persist_and_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suspensions.json");
        let s = Suspensions::load(path.clone()).unwrap();
        let t = now();
        let suspend = |until| {
            s.automation(
                AutoHold::Suspend {
                    scope: Scope {
                        source: Some("ip-1".into()),
                        site: Some("mx.a.test".into()),
                        ..Default::default()
                    },
                    reason: "421 [TS04]".into(),
                    rule: "provider 'yahoo' rule 1".into(),
                },
                until,
            )
            .unwrap()
        };
        suspend(t + 60);
        suspend(t + 120);
        assert_eq!(s.active().len(), 1, "renewed, not repeated");
        assert_eq!(s.active()[0].until, t + 120);
        assert!(s.path_remaining("ip-1", "mx.a.test").is_some());
        assert!(s.path_remaining("ip-1", "mx.b.test").is_none());
        assert!(s.source_remaining("ip-1").is_none(), "not the whole source");
        s.automation(
            AutoHold::Override(ConfigOverride {
                id: 0,
                source: "ip-1".into(),
                site: Some("mx.a.test".into()),
                domain: None,
                name: "max_message_rate".into(),
                value: "1/s".into(),
                until: 0,
                reason: "RL0000".into(),
                rule: "domain 'a.test' rule 1".into(),
                shared_key: None,
            }),
            t + 60,
        )
        .unwrap();
        s.automation(
            AutoHold::Bounce(BounceHold {
                id: 0,
                scope: Scope {
                    domain: Some("a.test".into()),
                    ..Default::default()
                },
                until: 0,
                reason: "gone".into(),
                rule: "domain 'a.test' rule 2".into(),
                shared_key: None,
            }),
            t + 60,
        )
        .unwrap();
        let again = Suspensions::load(path).unwrap();
        assert_eq!(again.active().len(), 1);
        let o = again.overrides();
        assert_eq!((o.len(), again.bounces().len()), (1, 1));
        assert!(again.cancel(o[0].id).unwrap());
        assert!(again.overrides().is_empty());
        assert_eq!(again.bounces().len(), 1);
    }
}
