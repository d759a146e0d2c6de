//! The README's "Not implemented yet" paragraph must stay true.
//!
//! That paragraph is machine-readable: every backticked name in it is a
//! policy option that nothing acts on yet. For each such name this test
//! asks two independent questions:
//!
//! 1. Does the real policy engine accept it? A Lua policy passes the name to
//!    `kumo.make_queue_config` and `kumo.make_egress_path` (with values of
//!    several types: string, boolean, number, duration, table) and the
//!    events are run. If no value is accepted by either function, the option
//!    is refused with an error naming the function and key, which is honest
//!    for an unimplemented option, and nothing more is checked.
//! 2. If accepted, the option deserializes into the struct field of the same
//!    name (these structs do not rename fields), and whatever implements it
//!    has to read that field. So the source of every crate that acts on
//!    configurations (every `crates/*/src` except `policy`, which only
//!    parses them: `delivery` above all, and `cli`, which turns resolver
//!    options into the DNS set-up) must not contain the identifier outside
//!    comments, string literals and `#[cfg(test)]` items. A match fails the
//!    test with the file and line: implement-and-forget-the-README is
//!    exactly what it catches. (Its blind spot: an option consumed only
//!    through a method of the policy crate, as `prohibited_hosts` is through
//!    `EgressPathConfig::validate`; the delivery code then reads the method's
//!    result, not the field.)
//!
//! Neither check is a tautology, and the test proves it on itself: the
//! same acceptance probe must reject a made-up name and accept real ones,
//! and the same source scan must find the reads of options the README says
//! work (`enable_dane`, `enable_mta_sts`, `max_age`, ...). Finally, the
//! phrase "not implemented" may appear in the README only in that
//! paragraph, so a caveat elsewhere in prose (the kind that went stale
//! before) cannot escape the list.

use ironpost_policy::{EngineOptions, PolicyEngine, PolicySource};
use std::path::{Path, PathBuf};

const MARKER: &str = "Not implemented yet:";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The backticked names of the README's "Not implemented yet" paragraph,
/// or `None` when the README has no such paragraph.
fn not_implemented(readme: &str) -> Option<Vec<String>> {
    let start = readme.find(MARKER)?;
    let rest = &readme[start..];
    let paragraph = &rest[..rest.find("\n\n").unwrap_or(rest.len())];
    let names: Vec<String> = paragraph
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    for n in &names {
        assert!(
            !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
            "README: {n:?} in the {MARKER:?} paragraph is not an option name; \
             backticks there are for option names only"
        );
    }
    Some(names)
}

/// Whether `kumo.make_queue_config` or `kumo.make_egress_path` accepts
/// `name` as a key, through the real engine.
fn accepted(name: &str) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut errors = Vec::new();
    // Values of several types: a known key may want any of them.
    for value in ["'x'", "true", "1", "'1m'", "{}"] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.lua");
        std::fs::write(
            &file,
            format!(
                "local kumo = require 'kumo'
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ ['{name}'] = {value} }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ ['{name}'] = {value} }}
end)
"
            ),
        )
        .unwrap();
        let (engine, _) = PolicyEngine::start(
            PolicySource::File(file),
            EngineOptions {
                pool_size: 1,
                ..Default::default()
            },
        )
        .unwrap();
        let queue = rt.block_on(engine.queue_config("example.test".into(), None, None, None));
        let egress = rt.block_on(engine.egress_path(
            "example.test".into(),
            "unspecified".into(),
            "site".into(),
        ));
        match (queue, egress) {
            (Ok(_), _) | (_, Ok(_)) => return true,
            // Another error (right key, wrong type for this value, or a
            // validation) leaves the question open for the next value.
            (Err(q), Err(e)) => errors.push(format!("{q} / {e}")),
        }
    }
    // The probe itself must have reached the functions: every failure is
    // theirs, naming the key.
    for e in &errors {
        assert!(e.contains(name), "unexpected probe failure for {name}: {e}");
    }
    false
}

/// Rust source with comments, string and char literals blanked out (line
/// structure kept) and every `#[cfg(test)]` item removed.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |out: &mut String, s: &[u8]| {
        for &c in s {
            out.push(if c == b'\n' { '\n' } else { ' ' });
        }
    };
    while i < b.len() {
        let rest = &b[i..];
        let end = if rest.starts_with(b"//") {
            i + rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len())
        } else if rest.starts_with(b"/*") {
            // Nested block comments.
            let (mut depth, mut j) = (0, i);
            loop {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
            }
        } else if rest.starts_with(b"r\"") || rest.starts_with(b"r#") {
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            body + b[body..]
                .windows(close.len())
                .position(|w| w == close)
                .unwrap()
                + close.len()
        } else if rest[0] == b'"' {
            let mut j = i + 1;
            while b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            j + 1
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{7f}'), or a lifetime.
            let len = if rest.get(1) == Some(&b'\\') {
                // Skip the escaped character itself: '\'' is four bytes.
                rest.get(3..)
                    .and_then(|r| r.iter().position(|&c| c == b'\''))
                    .map(|p| p + 4)
            } else {
                let ch = src[i + 1..].chars().next().map_or(1, char::len_utf8);
                (rest.get(1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(len) => i + len,
                None => {
                    out.push('\'');
                    i += 1;
                    continue;
                }
            }
        } else {
            let c = src[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        blank(&mut out, &b[i..end]);
        i = end;
    }
    // Remove #[cfg(test)] items: up to the `;` of `mod tests;` or the brace
    // that closes the item's body.
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let semi = out[after..].find(';').map(|p| after + p);
        let open = out[after..].find('{').map(|p| after + p);
        let end = match (semi, open) {
            (Some(s), Some(o)) if s < o => s + 1,
            (_, Some(o)) => {
                let mut depth = 0;
                let mut end = out.len();
                for (k, c) in out[o..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = o + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(s), None) => s + 1,
            (None, None) => out.len(),
        };
        let kept_lines = "\n".repeat(out[at..end].matches('\n').count());
        out.replace_range(at..end, &kept_lines);
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `src` of every crate that acts on configurations.
fn consumer_sources() -> Vec<(PathBuf, String)> {
    let root = workspace();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.file_name().is_some_and(|n| n == "policy") {
            continue;
        }
        if dir.join("src").is_dir() {
            rust_files(&dir.join("src"), &mut files);
        }
    }
    files.sort();
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("delivery/src/tls_policy.rs")),
        "the delivery crate's sources were not found under {}",
        root.display()
    );
    files
        .into_iter()
        .map(|f| {
            let code = code_only(&std::fs::read_to_string(&f).unwrap());
            (f.strip_prefix(&root).unwrap().to_path_buf(), code)
        })
        .collect()
}

/// `file:line` of every use of the identifier `name` in `sources`.
fn uses(sources: &[(PathBuf, String)], name: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (file, code) in sources {
        for (n, line) in code.lines().enumerate() {
            let hit = line.match_indices(name).any(|(at, _)| {
                !line[..at].chars().next_back().is_some_and(is_ident)
                    && !line[at + name.len()..].chars().next().is_some_and(is_ident)
            });
            if hit {
                found.push(format!("{}:{}", file.display(), n + 1));
            }
        }
    }
    found
}

#[test]
fn readme_not_implemented_list_is_true() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let sources = consumer_sources();

    // The caveat lives in one place only.
    let mentions = readme.to_lowercase().matches("not implemented").count();
    let names = match not_implemented(&readme) {
        Some(names) => {
            assert_eq!(
                mentions, 1,
                "README: \"not implemented\" outside the {MARKER:?} paragraph; \
                 list the option there (backticked) instead"
            );
            assert!(
                !names.is_empty(),
                "README: the {MARKER:?} paragraph names no option; remove it once \
                 everything is implemented"
            );
            names
        }
        None => {
            assert_eq!(mentions, 0, "README says \"not implemented\" in prose only");
            Vec::new()
        }
    };

    let mut wrong = Vec::new();
    for name in &names {
        if !accepted(name) {
            continue; // refused with an error naming the key: honest
        }
        let used = uses(&sources, name);
        if !used.is_empty() {
            wrong.push(format!(
                "`{name}` is listed as not implemented, but is accepted and read at {}",
                used.join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "README.md is out of date:\n{}",
        wrong.join("\n")
    );
}

/// The two probes discriminate: without this, a probe that always says
/// "rejected" or a scan that never finds anything would pass the test above.
#[test]
fn the_probes_can_tell_implemented_from_not() {
    assert!(!accepted("no_such_option_anywhere"));
    for name in ["enable_dane", "enable_mta_sts", "max_age", "retry_interval"] {
        assert!(accepted(name), "{name} should be accepted");
    }
    let sources = consumer_sources();
    for name in [
        "enable_dane",
        "enable_mta_sts",
        "max_age",
        "retry_interval",
        "connection_limit",
        "mx_list",
        // A resolver option, read by the cli crate.
        "trust_anchor_file",
    ] {
        assert!(
            !uses(&sources, name).is_empty(),
            "the source scan no longer sees the reads of {name}"
        );
    }
}

#[test]
fn code_only_drops_comments_strings_and_test_items() {
    let src = r##"
// egress_pool in a comment
/* egress_pool /* nested */ egress_pool */
let a = "egress_pool \" egress_pool";
let b = r#"egress_pool "# ;
let c = '"'; let d = '\''; fn f<'a>(x: &'a str) {}
let x = cfg.kept_field;
#[cfg(test)]
mod tests {
    fn t() { let _ = cfg.egress_pool; if true { } }
}
let after = cfg.after_field;
"##;
    let code = code_only(src);
    assert!(!code.contains("egress_pool"), "{code}");
    assert!(code.contains("cfg.kept_field"), "{code}");
    assert!(code.contains("cfg.after_field"), "{code}");
    assert!(code.contains("fn f<'a>(x: &'a str)"), "{code}");
    assert_eq!(code.lines().count(), src.lines().count());
    let sources = vec![(PathBuf::from("x.rs"), code)];
    assert_eq!(uses(&sources, "kept_field"), vec!["x.rs:7".to_string()]);
    assert!(uses(&sources, "kept").is_empty());
}
