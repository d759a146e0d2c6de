//! What `dns check` found: one [`Item`] per thing checked, as data (for
//! `--json`) or as an aligned table (for people).

use serde::Serialize;
use std::fmt;

/// The checks, in report order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    Spf,
    Dkim,
    Dmarc,
    MtaSts,
    TlsRpt,
    Bimi,
    Dnssec,
    Tlsa,
}

impl Check {
    pub fn name(self) -> &'static str {
        match self {
            Check::Spf => "spf",
            Check::Dkim => "dkim",
            Check::Dmarc => "dmarc",
            Check::MtaSts => "mta-sts",
            Check::TlsRpt => "tls-rpt",
            Check::Bimi => "bimi",
            Check::Dnssec => "dnssec",
            Check::Tlsa => "tlsa",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Ordered by severity, so the worst of several is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub check: Check,
    /// What was checked: an aspect of the domain's record (`record`,
    /// `policy`, `sources`...), a DKIM selector, or a TLSA owner name.
    pub subject: String,
    pub verdict: Verdict,
    pub detail: String,
}

impl Item {
    pub fn new(
        check: Check,
        subject: impl Into<String>,
        verdict: Verdict,
        detail: impl Into<String>,
    ) -> Item {
        Item {
            check,
            subject: subject.into(),
            verdict,
            detail: detail.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub domain: String,
    pub items: Vec<Item>,
}

/// Width the table's detail column wraps at, so that rows stay readable
/// in an 80-120 column terminal.
const DETAIL_WIDTH: usize = 72;

impl Report {
    /// Whether any item failed (the CLI's exit status).
    pub fn failed(&self) -> bool {
        self.items.iter().any(|i| i.verdict == Verdict::Fail)
    }

    /// The worst verdict (`Pass` for an empty report).
    pub fn worst(&self) -> Verdict {
        self.items
            .iter()
            .map(|i| i.verdict)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    /// The items of one check.
    pub fn of(&self, check: Check) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(move |i| i.check == check)
    }

    /// An aligned table, details wrapped, and a summary line.
    pub fn table(&self) -> String {
        let head = ("CHECK", "SUBJECT", "VERDICT");
        let w_check = self
            .items
            .iter()
            .map(|i| i.check.name().len())
            .chain([head.0.len()])
            .max()
            .unwrap_or(0);
        let w_subject = self
            .items
            .iter()
            .map(|i| i.subject.chars().count())
            .chain([head.1.len()])
            .max()
            .unwrap_or(0);
        let w_verdict = head.2.len();
        let indent = w_check + w_subject + w_verdict + 6;
        let mut out = format!("DNS posture of {}\n\n", self.domain);
        out.push_str(&format!(
            "{:w_check$}  {:w_subject$}  {:w_verdict$}  DETAIL\n",
            head.0, head.1, head.2
        ));
        for item in &self.items {
            let lines = wrap(&item.detail, DETAIL_WIDTH);
            out.push_str(&format!(
                "{:w_check$}  {:w_subject$}  {:w_verdict$}  {}\n",
                item.check.name(),
                item.subject,
                item.verdict.name().to_ascii_uppercase(),
                lines.first().map(String::as_str).unwrap_or("")
            ));
            for line in lines.iter().skip(1) {
                out.push_str(&format!("{:indent$}{line}\n", ""));
            }
        }
        let count = |v| self.items.iter().filter(|i| i.verdict == v).count();
        out.push_str(&format!(
            "\n{} pass, {} warn, {} fail\n",
            count(Verdict::Pass),
            count(Verdict::Warn),
            count(Verdict::Fail)
        ));
        out
    }
}

/// Word-wraps `text` at `width` characters; words longer than that (URLs,
/// base64) get a line of their own rather than being cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(cur);
    }
    lines
}

/// Several observations about one subject, reported as one item with the
/// worst verdict; problems come first in the detail, since they are what
/// the reader acts on.
#[derive(Default)]
pub(crate) struct Findings {
    notes: Vec<(Verdict, String)>,
}

impl Findings {
    pub(crate) fn new() -> Findings {
        Findings::default()
    }

    pub(crate) fn add(&mut self, verdict: Verdict, note: impl Into<String>) {
        self.notes.push((verdict, note.into()));
    }

    pub(crate) fn pass(&mut self, note: impl Into<String>) {
        self.add(Verdict::Pass, note);
    }

    pub(crate) fn warn(&mut self, note: impl Into<String>) {
        self.add(Verdict::Warn, note);
    }

    pub(crate) fn fail(&mut self, note: impl Into<String>) {
        self.add(Verdict::Fail, note);
    }

    pub(crate) fn verdict(&self) -> Verdict {
        self.notes
            .iter()
            .map(|(v, _)| *v)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    pub(crate) fn item(mut self, check: Check, subject: impl Into<String>) -> Item {
        let verdict = self.verdict();
        // Stable: notes of one severity keep their order.
        self.notes.sort_by_key(|n| std::cmp::Reverse(n.0));
        let detail = self
            .notes
            .into_iter()
            .map(|(_, n)| n)
            .collect::<Vec<_>>()
            .join("; ");
        Item::new(check, subject, verdict, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_take_the_worst_verdict_and_lead_with_problems() {
        let mut f = Findings::new();
        f.pass("one");
        f.warn("two");
        f.pass("three");
        let item = f.item(Check::Spf, "record");
        assert_eq!(item.verdict, Verdict::Warn);
        assert_eq!(item.detail, "two; one; three");
        assert_eq!(Findings::new().item(Check::Spf, "x").verdict, Verdict::Pass);
    }

    #[test]
    fn table_is_aligned_and_wrapped() {
        let report = Report {
            domain: "example.test".into(),
            items: vec![
                Item::new(Check::Spf, "record", Verdict::Pass, "v=spf1 -all"),
                Item::new(
                    Check::MtaSts,
                    "mx",
                    Verdict::Fail,
                    format!("{} end", "word ".repeat(30)),
                ),
            ],
        };
        let t = report.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "DNS posture of example.test");
        assert!(
            lines[2].starts_with("CHECK    SUBJECT  VERDICT  DETAIL"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("spf      record   PASS     v=spf1 -all"),
            "{t}"
        );
        assert!(
            lines[4].starts_with("mta-sts  mx       FAIL     word"),
            "{t}"
        );
        // Continuation lines start under the detail column.
        assert!(
            lines[5].starts_with(&format!("{}word", " ".repeat(27))),
            "{t}"
        );
        assert!(
            lines[6].starts_with(&" ".repeat(27)) && lines[6].ends_with("end"),
            "{t}"
        );
        assert!(t.ends_with("1 pass, 0 warn, 1 fail\n"));
        assert!(report.failed());
        assert_eq!(report.worst(), Verdict::Fail);
    }

    #[test]
    fn json_names() {
        let item = Item::new(Check::TlsRpt, "record", Verdict::Warn, "x");
        let json = serde_json::to_value(&item).unwrap();
        assert_eq!(json["check"], "tls-rpt");
        assert_eq!(json["verdict"], "warn");
        assert_eq!(wrap("", 10), vec![String::new()]);
    }
}
