//! The durable aggregate: session counts per day and policy, and the
//! delivery state of each day's reports, in SQLite (WAL, synchronous=FULL:
//! a committed batch survives a crash or power loss).
//!
//! Absent optional failure fields are stored as `''` rather than NULL,
//! because NULLs are distinct from each other in a UNIQUE constraint and
//! would break the `ON CONFLICT` upserts that do the counting.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::error::{Error, Result};
use crate::model::{
    non_empty, normalize_domain, normalize_ip, Aggregate, Failure, FailureCount, PolicyAggregate,
    Session, SessionPolicy,
};

/// Days are kept this long after they end, reported or not.
pub const KEEP_DAYS: i64 = 14;

/// A report that could not be delivered for this long after its first
/// attempt is abandoned.
pub const GIVE_UP_AFTER: TimeDelta = TimeDelta::days(2);

/// Migrations, in order; the schema version is the number applied. Never
/// edit one that has shipped: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1
    "CREATE TABLE policy_counts (
        id INTEGER PRIMARY KEY,
        day TEXT NOT NULL,
        policy_domain TEXT NOT NULL,
        policy_type TEXT NOT NULL,
        policy_strings TEXT NOT NULL,
        mx_host TEXT NOT NULL,
        success INTEGER NOT NULL DEFAULT 0,
        failure INTEGER NOT NULL DEFAULT 0,
        UNIQUE (day, policy_domain, policy_type, policy_strings, mx_host)
    );
    CREATE TABLE failure_counts (
        policy_id INTEGER NOT NULL REFERENCES policy_counts(id) ON DELETE CASCADE,
        result_type TEXT NOT NULL,
        sending_mta_ip TEXT NOT NULL,
        receiving_mx_hostname TEXT NOT NULL,
        receiving_mx_helo TEXT NOT NULL,
        receiving_ip TEXT NOT NULL,
        additional_information TEXT NOT NULL,
        failure_reason_code TEXT NOT NULL,
        count INTEGER NOT NULL,
        UNIQUE (policy_id, result_type, sending_mta_ip, receiving_mx_hostname,
                receiving_mx_helo, receiving_ip, additional_information,
                failure_reason_code)
    );
    -- A row here means the (day, domain) has been dealt with: its sends
    -- were started, or the domain asked for no reports.
    CREATE TABLE reports (
        day TEXT NOT NULL,
        policy_domain TEXT NOT NULL,
        outcome TEXT NOT NULL,
        decided_at INTEGER NOT NULL,
        PRIMARY KEY (day, policy_domain)
    );
    CREATE TABLE sends (
        day TEXT NOT NULL,
        policy_domain TEXT NOT NULL,
        rua TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        next_try INTEGER,
        done_at INTEGER,
        last_error TEXT,
        PRIMARY KEY (day, policy_domain, rua)
    );
    CREATE INDEX sends_due ON sends (state, next_try);",
];

/// Where a report to one `rua` destination stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Not delivered yet; due at `next_try`.
    Pending,
    Sent,
    /// Abandoned after [`GIVE_UP_AFTER`]; `last_error` says why.
    GaveUp,
}

impl SendState {
    fn as_str(self) -> &'static str {
        match self {
            SendState::Pending => "pending",
            SendState::Sent => "sent",
            SendState::GaveUp => "gave-up",
        }
    }

    fn parse(s: &str) -> Result<SendState> {
        match s {
            "pending" => Ok(SendState::Pending),
            "sent" => Ok(SendState::Sent),
            "gave-up" => Ok(SendState::GaveUp),
            other => Err(Error::Corrupt(format!("unknown send state {other:?}"))),
        }
    }
}

/// The delivery state of one (day, domain, rua).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    pub day: NaiveDate,
    pub policy_domain: String,
    pub rua: String,
    pub state: SendState,
    /// Failed attempts so far.
    pub attempts: u32,
    pub next_try: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// What [`Store::mark_failed`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailOutcome {
    /// Due again at this time (see [`Store::pending_sends`]).
    RetryAt(DateTime<Utc>),
    /// Abandoned, with the reason recorded.
    GaveUp(String),
}

/// Delay before the next attempt after `attempts` failed ones: 5 minutes,
/// doubling, at most 6 hours (about a dozen attempts in
/// [`GIVE_UP_AFTER`]).
pub fn retry_delay(attempts: u32) -> TimeDelta {
    let minutes = 5i64 << attempts.saturating_sub(1).min(10);
    TimeDelta::minutes(minutes.min(6 * 60))
}

/// The aggregate on disk. One connection; open a second `Store` on the
/// same file for the reporting side while a [`Recorder`](crate::Recorder)
/// owns the first (WAL lets them run concurrently).
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let mut conn = Connection::open(path)?;
        // Another connection (the writer thread, another process) may hold
        // the write lock for the length of one batch.
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Corrupt(format!(
                "journal_mode is {mode}, WAL could not be enabled"
            )));
        }
        // FULL: a commit that returned is on disk, which is what flush()
        // promises.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// The schema version of this database.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT version FROM schema_version", [], |r| r.get(0))?)
    }

    /// Adds `sessions` to the counts, all in one transaction.
    pub fn record(&mut self, sessions: &[Session]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert_policy = tx.prepare_cached(
                "INSERT INTO policy_counts
                    (day, policy_domain, policy_type, policy_strings, mx_host, success, failure)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (day, policy_domain, policy_type, policy_strings, mx_host)
                 DO UPDATE SET success = success + excluded.success,
                               failure = failure + excluded.failure
                 RETURNING id",
            )?;
            let mut upsert_failure = tx.prepare_cached(
                "INSERT INTO failure_counts
                    (policy_id, result_type, sending_mta_ip, receiving_mx_hostname,
                     receiving_mx_helo, receiving_ip, additional_information,
                     failure_reason_code, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)
                 ON CONFLICT (policy_id, result_type, sending_mta_ip, receiving_mx_hostname,
                              receiving_mx_helo, receiving_ip, additional_information,
                              failure_reason_code)
                 DO UPDATE SET count = count + 1",
            )?;
            for s in sessions {
                let domain = normalize_domain(&s.policy.policy_domain);
                if domain.is_empty() {
                    tracing::warn!("TLS-RPT: session without a policy domain, not counted");
                    continue;
                }
                let failed = s.failure.is_some();
                let id: i64 = upsert_policy.query_row(
                    params![
                        day_key(s.day),
                        domain,
                        s.policy.policy_type.as_str(),
                        json_list(&s.policy.policy_strings),
                        json_list(&s.policy.mx_host),
                        i64::from(!failed),
                        i64::from(failed),
                    ],
                    |r| r.get(0),
                )?;
                if let Some(f) = &s.failure {
                    upsert_failure.execute(params![
                        id,
                        f.result_type.trim(),
                        ip_text(f.sending_mta_ip),
                        opt_text(&f.receiving_mx_hostname.as_deref().map(normalize_domain)),
                        opt_text(&non_empty(&f.receiving_mx_helo)),
                        ip_text(f.receiving_ip),
                        opt_text(&non_empty(&f.additional_information)),
                        opt_text(&non_empty(&f.failure_reason_code)),
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Days before `today` with counts for a domain whose report has not
    /// been dealt with yet (no sends started, no [`mark_no_rua`]); oldest
    /// first.
    ///
    /// [`mark_no_rua`]: Store::mark_no_rua
    pub fn days_ready(&self, today: NaiveDate) -> Result<Vec<(NaiveDate, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT p.day, p.policy_domain FROM policy_counts p
             WHERE p.day < ?1 AND NOT EXISTS
                (SELECT 1 FROM reports r WHERE r.day = p.day AND r.policy_domain = p.policy_domain)
             ORDER BY p.day, p.policy_domain",
        )?;
        let rows = stmt.query_map([day_key(today)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        rows.map(|row| {
            let (day, domain) = row?;
            Ok((parse_day(&day)?, domain))
        })
        .collect()
    }

    /// The policy domains with counts on `day`.
    pub fn domains(&self, day: NaiveDate) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT policy_domain FROM policy_counts WHERE day = ?1 ORDER BY policy_domain",
        )?;
        let rows = stmt.query_map([day_key(day)], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The counts of `domain` on `day` (empty if there are none).
    pub fn aggregate(&self, day: NaiveDate, domain: &str) -> Result<Aggregate> {
        let domain = normalize_domain(domain);
        let mut policies_stmt = self.conn.prepare_cached(
            "SELECT id, policy_type, policy_strings, mx_host, success, failure
             FROM policy_counts WHERE day = ?1 AND policy_domain = ?2 ORDER BY id",
        )?;
        let mut failures_stmt = self.conn.prepare_cached(
            "SELECT result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,
                    receiving_ip, additional_information, failure_reason_code, count
             FROM failure_counts WHERE policy_id = ?1
             ORDER BY count DESC, result_type, rowid",
        )?;
        let rows: Vec<(i64, String, String, String, i64, i64)> = policies_stmt
            .query_map(params![day_key(day), domain], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<rusqlite::Result<_>>()?;
        let mut policies = Vec::with_capacity(rows.len());
        for (id, policy_type, strings, mx, success, failure) in rows {
            let failures = failures_stmt
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                })?
                .map(|row| {
                    let (rt, sip, mxh, helo, rip, info, code, n) = row?;
                    Ok(FailureCount {
                        failure: Failure {
                            result_type: rt,
                            sending_mta_ip: parse_ip(&sip)?,
                            receiving_mx_hostname: text_opt(mxh),
                            receiving_mx_helo: text_opt(helo),
                            receiving_ip: parse_ip(&rip)?,
                            additional_information: text_opt(info),
                            failure_reason_code: text_opt(code),
                        },
                        sessions: count(n),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            policies.push(PolicyAggregate {
                policy: SessionPolicy {
                    policy_type: policy_type.parse()?,
                    policy_domain: domain.clone(),
                    policy_strings: parse_list(&strings)?,
                    mx_host: parse_list(&mx)?,
                },
                successful_sessions: count(success),
                failed_sessions: count(failure),
                failures,
            });
        }
        Ok(Aggregate {
            day,
            policy_domain: domain,
            policies,
        })
    }

    /// The domain publishes no (valid) TLS-RPT record: the day is done
    /// and nothing is sent.
    pub fn mark_no_rua(&mut self, day: NaiveDate, domain: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO reports (day, policy_domain, outcome, decided_at)
             VALUES (?1, ?2, 'no-rua', ?3)
             ON CONFLICT (day, policy_domain) DO NOTHING",
            params![
                day_key(day),
                normalize_domain(domain),
                Utc::now().timestamp()
            ],
        )?;
        Ok(())
    }

    /// Marks the day as being reported and each of `ruas` as due at `now`,
    /// in one transaction, so that a crash before every destination got
    /// its report leaves the rest in [`pending_sends`](Store::pending_sends)
    /// rather than forgotten. Destinations already known are left as they
    /// are.
    pub fn start_sends(
        &mut self,
        day: NaiveDate,
        domain: &str,
        ruas: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let domain = normalize_domain(domain);
        let tx = self.conn.transaction()?;
        mark_reported(&tx, day, &domain, now)?;
        for rua in ruas {
            ensure_send(&tx, day, &domain, rua, now)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The report of `day` for `domain` reached `rua`.
    pub fn mark_sent(&mut self, day: NaiveDate, domain: &str, rua: &str) -> Result<()> {
        let domain = normalize_domain(domain);
        let now = Utc::now();
        let tx = self.conn.transaction()?;
        mark_reported(&tx, day, &domain, now)?;
        ensure_send(&tx, day, &domain, rua, now)?;
        tx.execute(
            "UPDATE sends SET state = ?4, next_try = NULL, done_at = ?5
             WHERE day = ?1 AND policy_domain = ?2 AND rua = ?3",
            params![
                day_key(day),
                domain,
                rua,
                SendState::Sent.as_str(),
                now.timestamp()
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// An attempt to deliver to `rua` failed with `error`; try again at
    /// `next_try` (e.g. now + [`retry_delay`]) unless that is more than
    /// [`GIVE_UP_AFTER`] after the first attempt, in which case the send
    /// is abandoned with the reason recorded.
    pub fn mark_failed(
        &mut self,
        day: NaiveDate,
        domain: &str,
        rua: &str,
        error: &str,
        next_try: DateTime<Utc>,
    ) -> Result<FailOutcome> {
        let domain = normalize_domain(domain);
        let now = Utc::now();
        let error = clip(error);
        let tx = self.conn.transaction()?;
        mark_reported(&tx, day, &domain, now)?;
        ensure_send(&tx, day, &domain, rua, now)?;
        let (attempts, created_at): (i64, i64) = tx.query_row(
            "SELECT attempts, created_at FROM sends
             WHERE day = ?1 AND policy_domain = ?2 AND rua = ?3",
            params![day_key(day), domain, rua],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let attempts = attempts + 1;
        let give_up = next_try.timestamp() - created_at > GIVE_UP_AFTER.num_seconds();
        let outcome = if give_up {
            let reason = format!("gave up after {attempts} attempts: {error}");
            tx.execute(
                "UPDATE sends SET state = ?4, attempts = ?5, next_try = NULL, done_at = ?6,
                                  last_error = ?7
                 WHERE day = ?1 AND policy_domain = ?2 AND rua = ?3",
                params![
                    day_key(day),
                    domain,
                    rua,
                    SendState::GaveUp.as_str(),
                    attempts,
                    now.timestamp(),
                    reason
                ],
            )?;
            FailOutcome::GaveUp(reason)
        } else {
            tx.execute(
                "UPDATE sends SET state = ?4, attempts = ?5, next_try = ?6, last_error = ?7
                 WHERE day = ?1 AND policy_domain = ?2 AND rua = ?3",
                params![
                    day_key(day),
                    domain,
                    rua,
                    SendState::Pending.as_str(),
                    attempts,
                    next_try.timestamp(),
                    error
                ],
            )?;
            FailOutcome::RetryAt(
                DateTime::from_timestamp(next_try.timestamp(), 0).unwrap_or(next_try),
            )
        };
        tx.commit()?;
        Ok(outcome)
    }

    /// Sends due at `now`, earliest first.
    pub fn pending_sends(&self, now: DateTime<Utc>) -> Result<Vec<SendRecord>> {
        self.sends_where(
            "state = 'pending' AND next_try <= ?1 ORDER BY next_try, day, policy_domain, rua",
            params![now.timestamp()],
        )
    }

    /// Every destination of the report of `day` for `domain`.
    pub fn sends(&self, day: NaiveDate, domain: &str) -> Result<Vec<SendRecord>> {
        self.sends_where(
            "day = ?1 AND policy_domain = ?2 ORDER BY rua",
            params![day_key(day), normalize_domain(domain)],
        )
    }

    fn sends_where(&self, cond: &str, args: impl rusqlite::Params) -> Result<Vec<SendRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT day, policy_domain, rua, state, attempts, next_try, last_error
             FROM sends WHERE {cond}"
        ))?;
        let rows = stmt.query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<String>>(6)?,
            ))
        })?;
        rows.map(|row| {
            let (day, policy_domain, rua, state, attempts, next_try, last_error) = row?;
            Ok(SendRecord {
                day: parse_day(&day)?,
                policy_domain,
                rua,
                state: SendState::parse(&state)?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                next_try: next_try.and_then(|t| DateTime::from_timestamp(t, 0)),
                last_error,
            })
        })
        .collect()
    }

    /// Forgets days more than [`KEEP_DAYS`] before `today`: counts, report
    /// and send state. Returns how many (day, domain) pairs went.
    pub fn prune(&mut self, today: NaiveDate) -> Result<usize> {
        let cutoff = day_key(today - TimeDelta::days(KEEP_DAYS));
        let tx = self.conn.transaction()?;
        let (pairs, unreported): (i64, i64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(NOT EXISTS
                (SELECT 1 FROM reports r WHERE r.day = p.day AND r.policy_domain = p.policy_domain)), 0)
             FROM (SELECT DISTINCT day, policy_domain FROM policy_counts WHERE day < ?1) p",
            [&cutoff],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        tx.execute("DELETE FROM policy_counts WHERE day < ?1", [&cutoff])?;
        tx.execute("DELETE FROM reports WHERE day < ?1", [&cutoff])?;
        tx.execute("DELETE FROM sends WHERE day < ?1", [&cutoff])?;
        tx.commit()?;
        if unreported > 0 {
            tracing::warn!(
                unreported,
                "TLS-RPT: pruned day/domain counts that were never reported"
            );
        }
        Ok(usize::try_from(pairs).unwrap_or(0))
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // IMMEDIATE: two processes opening a new file at once must not both
    // run the migrations.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: Option<i64> = tx
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    let supported = MIGRATIONS.len() as i64;
    let current = found.unwrap_or(0);
    if current > supported {
        return Err(Error::SchemaTooNew {
            found: current,
            supported,
        });
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql)?;
    }
    if found.is_none() {
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [supported],
        )?;
    } else if current < supported {
        tx.execute("UPDATE schema_version SET version = ?1", [supported])?;
    }
    tx.commit()?;
    Ok(())
}

fn mark_reported(
    tx: &rusqlite::Transaction<'_>,
    day: NaiveDate,
    domain: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO reports (day, policy_domain, outcome, decided_at)
         VALUES (?1, ?2, 'sending', ?3)
         ON CONFLICT (day, policy_domain) DO NOTHING",
        params![day_key(day), domain, now.timestamp()],
    )?;
    Ok(())
}

fn ensure_send(
    tx: &rusqlite::Transaction<'_>,
    day: NaiveDate,
    domain: &str,
    rua: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    tx.execute(
        "INSERT INTO sends (day, policy_domain, rua, state, attempts, created_at, next_try)
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)
         ON CONFLICT (day, policy_domain, rua) DO NOTHING",
        params![day_key(day), domain, rua, now.timestamp()],
    )?;
    Ok(())
}

/// ISO 8601, so that text order is date order.
fn day_key(day: NaiveDate) -> String {
    day.format("%Y-%m-%d").to_string()
}

fn parse_day(s: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| Error::Corrupt(format!("day {s:?}: {e}")))
}

fn json_list(items: &[String]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

fn parse_list(s: &str) -> Result<Vec<String>> {
    serde_json::from_str(s).map_err(|e| Error::Corrupt(format!("list {s:?}: {e}")))
}

fn ip_text(ip: Option<IpAddr>) -> String {
    normalize_ip(ip)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

fn parse_ip(s: &str) -> Result<Option<IpAddr>> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| Error::Corrupt(format!("address {s:?}: {e}")))
}

fn opt_text(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn text_opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Errors are logged and stored per attempt; bound what a server can make
/// us keep.
fn clip(s: &str) -> String {
    const MAX: usize = 500;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PolicyType;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn sts(domain: &str) -> SessionPolicy {
        SessionPolicy {
            policy_type: PolicyType::Sts,
            policy_domain: domain.into(),
            policy_strings: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx_host: vec!["*.mx.example.net".into()],
        }
    }

    fn fail(result_type: &str) -> Failure {
        Failure {
            result_type: result_type.into(),
            receiving_mx_hostname: Some("mx1.example.net".into()),
            receiving_ip: Some("192.0.2.7".parse().unwrap()),
            ..Failure::default()
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("tlsrpt.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn counts_group_by_policy_and_failure() {
        let (_dir, mut store) = open();
        let d = day("2024-05-01");
        let mut other = sts("example.net");
        other.policy_strings.push("max_age: 86400".into());
        store
            .record(&[
                Session::success(d, sts("example.net")),
                Session::success(d, sts("Example.NET.")),
                Session::failure(d, sts("example.net"), fail("certificate-expired")),
                Session::failure(d, sts("example.net"), fail("certificate-expired")),
                Session::failure(
                    d,
                    sts("example.net"),
                    Failure {
                        failure_reason_code: Some("".into()),
                        ..fail("certificate-expired")
                    },
                ),
                Session::failure(d, sts("example.net"), fail("starttls-not-supported")),
                Session::success(d, other.clone()),
                Session::success(day("2024-05-02"), sts("example.net")),
            ])
            .unwrap();
        let agg = store.aggregate(d, "EXAMPLE.net").unwrap();
        assert_eq!(agg.policies.len(), 2);
        let p = &agg.policies[0];
        assert_eq!(p.policy, sts("example.net"));
        assert_eq!((p.successful_sessions, p.failed_sessions), (2, 4));
        assert_eq!(p.failures.len(), 2);
        assert_eq!(p.failures[0].failure, fail("certificate-expired"));
        assert_eq!(p.failures[0].sessions, 3);
        assert_eq!(p.failures[1].sessions, 1);
        assert_eq!(agg.policies[1].policy, other);
        assert!(store.aggregate(d, "nothing.example").unwrap().is_empty());
    }

    #[test]
    fn days_ready_and_report_states() {
        let (_dir, mut store) = open();
        let (d1, d2, today) = (day("2024-05-01"), day("2024-05-02"), day("2024-05-03"));
        store
            .record(&[
                Session::success(d1, sts("a.example")),
                Session::success(d1, sts("b.example")),
                Session::success(d2, sts("a.example")),
                Session::success(today, sts("a.example")),
            ])
            .unwrap();
        assert_eq!(
            store.days_ready(today).unwrap(),
            vec![
                (d1, "a.example".to_string()),
                (d1, "b.example".to_string()),
                (d2, "a.example".to_string()),
            ]
        );
        store.mark_no_rua(d1, "b.example").unwrap();
        let now = Utc::now();
        let ruas = vec![
            "mailto:r@a.example".to_string(),
            "https://a.example/r".into(),
        ];
        store.start_sends(d1, "a.example", &ruas, now).unwrap();
        assert_eq!(
            store.days_ready(today).unwrap(),
            vec![(d2, "a.example".to_string())]
        );
        let due = store.pending_sends(now).unwrap();
        assert_eq!(due.len(), 2);
        assert!(due.iter().all(|s| s.state == SendState::Pending));

        store.mark_sent(d1, "a.example", &ruas[0]).unwrap();
        let next = now + retry_delay(1);
        assert_eq!(
            store
                .mark_failed(d1, "a.example", &ruas[1], "HTTP 503", next)
                .unwrap(),
            FailOutcome::RetryAt(DateTime::from_timestamp(next.timestamp(), 0).unwrap())
        );
        assert!(store.pending_sends(now).unwrap().is_empty());
        let due = store.pending_sends(next).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].rua, ruas[1]);
        assert_eq!(due[0].attempts, 1);
        assert_eq!(due[0].last_error.as_deref(), Some("HTTP 503"));

        // Past the give-up window.
        let late = now + GIVE_UP_AFTER + TimeDelta::hours(1);
        let FailOutcome::GaveUp(reason) = store
            .mark_failed(d1, "a.example", &ruas[1], "HTTP 503", late)
            .unwrap()
        else {
            panic!("should give up");
        };
        assert!(reason.contains("2 attempts") && reason.contains("HTTP 503"));
        assert!(store.pending_sends(late).unwrap().is_empty());
        let states: Vec<SendState> = store
            .sends(d1, "a.example")
            .unwrap()
            .iter()
            .map(|s| s.state)
            .collect();
        assert_eq!(states, vec![SendState::GaveUp, SendState::Sent]);
    }

    #[test]
    fn prune_keeps_fourteen_days() {
        let (_dir, mut store) = open();
        let today = day("2024-06-30");
        let old = today - TimeDelta::days(KEEP_DAYS + 1);
        let kept = today - TimeDelta::days(KEEP_DAYS);
        store
            .record(&[
                Session::failure(old, sts("a.example"), fail("validation-failure")),
                Session::success(kept, sts("a.example")),
            ])
            .unwrap();
        store
            .start_sends(old, "a.example", &["mailto:x@a.example".into()], Utc::now())
            .unwrap();
        assert_eq!(store.prune(today).unwrap(), 1);
        assert!(store.aggregate(old, "a.example").unwrap().is_empty());
        assert!(store.sends(old, "a.example").unwrap().is_empty());
        assert!(!store.aggregate(kept, "a.example").unwrap().is_empty());
        let n: i64 = store
            .conn
            .query_row("SELECT COUNT(*) FROM failure_counts", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0, "failure rows go with their policy row");
    }

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tlsrpt.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(store);
        // Reopening does not re-run migrations.
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute("UPDATE schema_version SET version = 99", [])
            .unwrap();
        drop(conn);
        match Store::open(&path) {
            Err(Error::SchemaTooNew { found: 99, .. }) => {}
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(retry_delay(1), TimeDelta::minutes(5));
        assert_eq!(retry_delay(2), TimeDelta::minutes(10));
        assert_eq!(retry_delay(8), TimeDelta::hours(6));
        assert_eq!(retry_delay(500), TimeDelta::hours(6));
    }
}
