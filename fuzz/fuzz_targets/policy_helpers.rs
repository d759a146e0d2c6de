//! The data files of the `policy-extras.*` helpers (queue, shaping,
//! listener_domains, dkim_sign, passwords), TOML or JSON, through the same
//! checks `setup` makes, without Lua or files. The first byte picks the
//! helper and the format; the rest is the file's text.
//! - nothing panics (deep nesting included);
//! - what `setup` accepts works when it is used: every lookup, with names
//!   taken from the text itself, gives a configuration, never an error;
//! - a TOML file means the same as its data written as JSON.
#![no_main]

use ironpost_policy::helpers::{
    dkim_sign, listener_domains, parse_data, passwords, queues, shaping,
};
use libfuzzer_sys::fuzz_target;

/// Words of the text that could be names (domains, tenants, campaigns),
/// and a few that always are.
fn names(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || "._-*:[]".contains(c)))
        .filter(|w| !w.is_empty())
        .take(6)
        .collect();
    v.extend(["default", "example.com", "a.example.com", "*"]);
    v
}

/// Whether the helper accepts the text; panics if what it accepted fails
/// when used.
fn check(helper: u8, text: &str, json: bool) -> bool {
    let names = names(text);
    match helper {
        0 => {
            let Ok(q) = queues::parse(text, json) else {
                return false;
            };
            for d in &names {
                for (t, c) in [
                    (None, None),
                    (Some(names[0]), None),
                    (Some(names[0]), Some(names[1])),
                ] {
                    if let Err(e) = q.queue_config(d, t, c) {
                        panic!("queue data accepted, but ({d}, {t:?}, {c:?}) fails: {e}");
                    }
                }
            }
        }
        1 => {
            let Ok(s) = shaping::parse(text, json) else {
                return false;
            };
            for d in &names {
                let site = names.join(",");
                let params = s.resolve(d, "src", &site, &|_| Some(site.clone()), &[]);
                if let Err(e) = shaping::data::to_config(params) {
                    panic!("shaping data accepted, but ({d}, {site}) fails: {e}");
                }
            }
        }
        2 => {
            let Ok(l) = listener_domains::parse(text, json) else {
                return false;
            };
            let peer = "192.0.2.1".parse().ok();
            for d in &names {
                for listener in ["*", names[0], "127.0.0.1:25"] {
                    let _ = l.lookup(d, listener, Some(names[1]), peer);
                }
            }
        }
        3 => {
            let Ok(k) = dkim_sign::parse(text, json) else {
                return false;
            };
            for d in &names {
                let signers = k
                    .signers(d)
                    .unwrap_or_else(|e| panic!("dkim_sign data accepted, but {d} fails: {e}"));
                // Signing would refuse what these do not parse as.
                for (_, p) in signers {
                    for c in [&p.header_canonicalization, &p.body_canonicalization] {
                        assert!(
                            c.parse::<ironpost_dkim::Canon>().is_ok(),
                            "dkim_sign data accepted with canonicalization {c:?}"
                        );
                    }
                }
            }
        }
        _ => {
            let Ok(users) = passwords::parse_users(text, json) else {
                return false;
            };
            for h in users.values() {
                assert!(h.starts_with("$argon2id$") || h.starts_with("$2"));
            }
        }
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let helper = (first & 0x7f) % 5;
    let json = first & 0x80 != 0;
    let accepted = check(helper, text, json);

    // The same data as JSON must be read the same way.
    if !json {
        if let Ok(value) = parse_data(text, false) {
            // The json5 crate refuses the line and paragraph separators
            // unescaped in strings (JSON allows them): escape them.
            let as_json = value
                .to_string()
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029");
            assert_eq!(
                parse_data(&as_json, true).as_ref().ok(),
                Some(&value),
                "{as_json}"
            );
            assert_eq!(check(helper, &as_json, true), accepted, "{as_json}");
        }
    }
});
