//! Bounce classification: the reply of a delivery attempt, as one line
//! ("550 5.1.1 no such user"), mapped to a class (`InvalidRecipient`,
//! `SpamBlock`, ...) by ordered regular expressions. Rules files use
//! KumoMTA's format (`[rules]`, `Class = ["regex", ...]`, TOML or JSON):
//! the first matching rule, in file order and then in each file's order,
//! wins; no match is `Uncategorized`. Ironpost ships its own rules
//! (`bounce_rules.toml`), used when the policy names none.

use crate::record::Response;
use crate::LogError;
use indexmap::IndexMap;
use regex::RegexSet;
use std::path::Path;
use std::sync::Arc;

/// The built-in rules.
pub const BUILTIN_RULES: &str = include_str!("bounce_rules.toml");

pub const UNCATEGORIZED: &str = "Uncategorized";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    rules: IndexMap<String, Vec<String>>,
}

#[derive(Debug)]
pub struct BounceClassifier {
    set: RegexSet,
    /// The class of each pattern of `set`, by index.
    classes: Vec<Arc<str>>,
}

impl BounceClassifier {
    pub fn builtin() -> BounceClassifier {
        BounceClassifier::from_texts(&[("built-in rules", BUILTIN_RULES, false)])
            .expect("the built-in rules compile")
    }

    /// Rules files in order (`.json` names are JSON, others TOML).
    pub fn from_files(files: &[impl AsRef<Path>]) -> Result<BounceClassifier, LogError> {
        let mut texts = Vec::new();
        for f in files {
            let f = f.as_ref();
            let text = std::fs::read_to_string(f).map_err(|e| LogError::Classifier {
                file: f.display().to_string(),
                reason: e.to_string(),
            })?;
            let json = f
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"));
            texts.push((f.display().to_string(), text, json));
        }
        let refs: Vec<(&str, &str, bool)> = texts
            .iter()
            .map(|(n, t, j)| (n.as_str(), t.as_str(), *j))
            .collect();
        BounceClassifier::from_texts(&refs)
    }

    /// `(name, text, json)` for each rules file, in order.
    pub fn from_texts(files: &[(&str, &str, bool)]) -> Result<BounceClassifier, LogError> {
        let mut patterns = Vec::new();
        let mut classes = Vec::new();
        for (name, text, json) in files {
            let err = |reason: String| LogError::Classifier {
                file: name.to_string(),
                reason,
            };
            let file: RulesFile = if *json {
                serde_json::from_str(text).map_err(|e| err(e.to_string()))?
            } else {
                toml::from_str(text).map_err(|e| err(e.to_string()))?
            };
            for (class, rules) in file.rules {
                let class: Arc<str> = class.into();
                for rule in rules {
                    // Each rule alone first, so an error names it.
                    regex::Regex::new(&rule)
                        .map_err(|e| err(format!("class {class}: rule {rule:?}: {e}")))?;
                    patterns.push(rule);
                    classes.push(class.clone());
                }
            }
        }
        let set = RegexSet::new(&patterns).map_err(|e| LogError::Classifier {
            file: "(all rules)".into(),
            reason: e.to_string(),
        })?;
        Ok(BounceClassifier { set, classes })
    }

    /// The class of one reply line.
    pub fn classify(&self, line: &str) -> &str {
        self.set
            .matches(line)
            .iter()
            .next()
            .map_or(UNCATEGORIZED, |i| &self.classes[i])
    }

    /// The class of a record's response: "CODE ENHANCED TEXT" on one line,
    /// or the error text when there was no reply.
    pub fn classify_response(&self, r: &Response) -> String {
        let text = r.content.replace(['\r', '\n'], " ");
        let line = match (r.code, &r.enhanced_code) {
            (Some(c), Some(e)) => format!("{c} {e} {text}"),
            (Some(c), None) => format!("{c} {text}"),
            _ => text,
        };
        self.classify(&line).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_file_then_table_order() {
        // KumoMTA's own ordering case: the first class listing a match
        // wins, and a later file only adds rules.
        let c = BounceClassifier::from_texts(&[
            (
                "a",
                "[rules]\nfoo = ['woot', 'aaa']\nbar = ['woot', 'aaa', 'bbb']\n",
                false,
            ),
            (
                "b",
                r#"{ "rules": { "second_file": ["bbb", "ccc"] } }"#,
                true,
            ),
        ])
        .unwrap();
        assert_eq!(c.classify("woot"), "foo");
        assert_eq!(c.classify("aaa"), "foo");
        assert_eq!(c.classify("bbb"), "bar");
        assert_eq!(c.classify("ccc"), "second_file");
        assert_eq!(c.classify("zzz"), UNCATEGORIZED);
    }

    #[test]
    fn a_bad_rule_is_named() {
        let e = BounceClassifier::from_texts(&[("x.toml", "[rules]\nSpamBlock = ['(']\n", false)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml") && e.contains("SpamBlock") && e.contains("\"(\""),
            "{e}"
        );
        let e = BounceClassifier::from_texts(&[("y.toml", "[rulez]\n", false)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("y.toml") && e.contains("rulez"), "{e}");
    }

    /// Real-world replies (as providers send them) and the class the
    /// built-in rules give each: `tests/bounce_replies.txt`.
    #[test]
    fn builtin_rules_classify_real_replies() {
        let c = BounceClassifier::builtin();
        let table = include_str!("../tests/bounce_replies.txt");
        let mut wrong = Vec::new();
        let mut n = 0;
        for line in table
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let (class, reply) = line.split_once(" | ").expect("CLASS | reply");
            n += 1;
            let got = c.classify(reply);
            if got != class.trim() {
                wrong.push(format!("{reply}\n  expected {class}, got {got}"));
            }
        }
        assert!(n >= 40, "the table has {n} replies");
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
