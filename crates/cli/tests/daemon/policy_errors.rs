//! Policy errors: start-up errors name the key, the function and
//! `policy.lua:LINE` and make the daemon exit non-zero; an error inside an
//! event answers `451 4.3.0` and leaves nothing half-written; `kumo.reject`
//! sets the reply.

use crate::common::*;
use ironpost_testkit::{Daemon, DaemonOptions, SmtpClient};

/// Starts `lua`, expecting failure; returns stderr.
fn start_fails(lua: &str) -> String {
    let (code, stderr) =
        Daemon::try_start_expect_failure(DaemonOptions::new(BIN).policy(lua)).unwrap();
    assert_ne!(code, 0, "exit code; stderr: {stderr}");
    assert!(
        !stderr.contains("panicked"),
        "a policy error is not a crash: {stderr}"
    );
    stderr
}

/// 1-based line of the first line of `lua` containing `needle`.
fn line_of(lua: &str, needle: &str) -> usize {
    lua.lines()
        .position(|l| l.contains(needle))
        .expect("needle in policy")
        + 1
}

const HEAD: &str = "local kumo = require 'kumo'\nkumo.on('init', function()\n";

#[test]
fn unknown_key_in_start_esmtp_listener() {
    let lua = format!(
        "{HEAD}  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}\n  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0', relay_host = {{ '127.0.0.1' }} }}\nend)\n"
    );
    let stderr = start_fails(&lua);
    let line = line_of(&lua, "relay_host");
    assert!(stderr.contains("relay_host"), "{stderr}");
    assert!(stderr.contains("start_esmtp_listener"), "{stderr}");
    assert!(
        stderr.contains(&format!("policy.lua:{line}")),
        "expected policy.lua:{line} in {stderr}"
    );
}

#[test]
fn unknown_keys_in_other_init_functions() {
    for (call, key, func) in [
        (
            "kumo.define_spool { name = 'data', path = './s', flsuh = true }",
            "flsuh",
            "define_spool",
        ),
        (
            "kumo.configure_local_logs { log_dir = './l', max_segment_duraton = '1m' }",
            "max_segment_duraton",
            "configure_local_logs",
        ),
    ] {
        let lua = format!(
            "{HEAD}  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0' }}\n  {call}\nend)\n"
        );
        let stderr = start_fails(&lua);
        let line = line_of(&lua, key);
        assert!(stderr.contains(key), "{stderr}");
        assert!(stderr.contains(func), "{stderr}");
        assert!(
            stderr.contains(&format!("policy.lua:{line}")),
            "expected policy.lua:{line} in {stderr}"
        );
    }
}

#[test]
fn lua_syntax_error_names_file_and_line() {
    let lua = "local kumo = require 'kumo'\n\nkumo.on('init', function()\n  local x = = 1\nend)\n";
    let stderr = start_fails(lua);
    assert!(stderr.contains("policy.lua:4"), "{stderr}");
}

#[test]
fn runtime_error_in_init_names_file_and_line() {
    let lua = format!(
        "{HEAD}  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}\n  error('init exploded')\nend)\n"
    );
    let stderr = start_fails(&lua);
    assert!(stderr.contains("init exploded"), "{stderr}");
    assert!(stderr.contains("policy.lua:4"), "{stderr}");
}

#[test]
fn policy_without_listener_or_spool_is_refused() {
    let stderr = start_fails(&format!(
        "{HEAD}  kumo.define_spool {{ name = 'data', path = './ironpost-data/spool' }}\nend)\n"
    ));
    assert!(stderr.contains("listener"), "{stderr}");
    let stderr = start_fails(&format!(
        "{HEAD}  kumo.start_esmtp_listener {{ listen = '127.0.0.1:0' }}\nend)\n"
    ));
    assert!(stderr.contains("spool"), "{stderr}");
}

#[test]
fn sandboxed_standard_library() {
    // The daemon starts only if every assertion holds.
    let d = start(&policy(
        "",
        r#"
assert(io == nil, 'io is available')
assert(os.execute == nil, 'os.execute is available')
assert(os.exit == nil, 'os.exit is available')
assert(os.remove == nil, 'os.remove is available')
assert(loadfile == nil, 'loadfile is available')
assert(dofile == nil, 'dofile is available')
assert(debug == nil, 'debug is available')
assert(type(os.time()) == 'number')
assert(string.format('%d', 1) == '1')
"#,
    ));
    assert!(!d.smtp.is_empty());
}

const EVENT_POLICY: &str = r#"
kumo.on('smtp_server_message_received', function(msg)
  -- Changes made before the failure must not survive it.
  msg:set_meta('touched', 'yes')
  msg:append_header('X-Touched', 'yes')
  local mode = msg:get_first_named_header_value('X-Test-Mode')
  if mode == 'error' then
    error('deliberate failure in policy')
  elseif mode == 'nil-index' then
    local t = nil
    return t.field
  elseif mode == 'reject' then
    kumo.reject(550, '5.7.1 nope')
  elseif mode == 'tempfail' then
    kumo.reject(451, 'try later')
  end
end)
"#;

fn with_mode(mode: &str) -> Vec<u8> {
    format!("X-Test-Mode: {mode}\r\nSubject: {mode}\r\n\r\nbody\r\n").into_bytes()
}

async fn transaction(c: &mut SmtpClient, data: &[u8]) -> ironpost_testkit::Reply {
    c.send_message("a@example.test", &["b@example.test"], data)
        .await
        .expect("transaction")
}

#[tokio::test]
async fn runtime_error_in_message_event_is_451_and_stores_nothing() {
    let d = start(&policy("", EVENT_POLICY));
    let mut c = connect_ehlo(&d).await;

    for mode in ["error", "nil-index", "error"] {
        let r = transaction(&mut c, &with_mode(mode)).await;
        check(&r, 451, "4.3.0", mode);
    }
    settle_logs();
    assert!(records(&d, "Reception").is_empty());
    assert!(
        spool_of(&d).is_empty(),
        "nothing spooled after a policy error"
    );
    let rejections = wait_records(&d, "Rejection", 3);
    assert_eq!(rejections.len(), 3, "{rejections:#?}");
    for rec in &rejections {
        assert_eq!(rec["response"]["code"], 451);
        assert!(rec["reason"].is_string(), "{rec}");
    }
    // The Lua error, with its location, goes to the operator's log.
    let stderr = stderr_with(&d, &["deliberate failure in policy", "policy.lua:"]);
    assert!(stderr.contains("deliberate failure in policy"), "{stderr}");
    assert!(stderr.contains("policy.lua:"), "{stderr}");

    // The same connection, and the policy engine, still work.
    let id = accepted_id(&transaction(&mut c, &with_mode("none")).await);
    let stored = spool_of(&d);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].id, id);
    assert_eq!(stored[0].meta["meta"]["touched"], "yes");
    assert!(contains(&stored[0].data, b"X-Touched: yes\r\n"));
    reception(&d, &id);

    // Many failures in a row do not poison the engine for others.
    for _ in 0..10 {
        let mut c = connect_ehlo(&d).await;
        check(
            &transaction(&mut c, &with_mode("error")).await,
            451,
            "4.3.0",
            "error",
        );
        accepted_id(&transaction(&mut c, &with_mode("none")).await);
    }
    assert_eq!(spool_of(&d).len(), 11);
}

#[tokio::test]
async fn kumo_reject_sets_the_reply() {
    let d = start(&policy("", EVENT_POLICY));
    let mut c = connect_ehlo(&d).await;
    let r = transaction(&mut c, &with_mode("reject")).await;
    check(&r, 550, "5.7.1", "reject");
    assert_eq!(r.text(), "5.7.1 nope");
    let r = transaction(&mut c, &with_mode("tempfail")).await;
    check(&r, 451, "4.0.0", "tempfail");
    assert_eq!(r.text(), "4.0.0 try later");
    settle_logs();
    assert!(spool_of(&d).is_empty());
    let rejections = wait_records(&d, "Rejection", 2);
    assert_eq!(rejections.len(), 2);
    assert_eq!(rejections[0]["reason"], "nope");
    accepted_id(&transaction(&mut c, &with_mode("none")).await);
}

const DOMAIN_POLICY: &str = r#"
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'broken.test' then
    error('listener domain lookup failed')
  elseif domain == 'refused.test' then
    kumo.reject(550, '5.7.1 we do not serve refused.test')
  elseif domain == 'ok.test' then
    return kumo.make_listener_domain { relay_to = true }
  end
end)
"#;

#[tokio::test]
async fn errors_in_get_listener_domain() {
    // 127.0.0.1 is untrusted, so every recipient consults the policy.
    let d = start(&policy("relay_hosts = { '127.0.0.2' },", DOMAIN_POLICY));
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<a@example.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@broken.test>", 451, "4.3.0").await;
    let r = expect(&mut c, "RCPT TO:<a@refused.test>", 550, "5.7.1").await;
    assert_eq!(r.text(), "5.7.1 we do not serve refused.test");
    expect(&mut c, "RCPT TO:<a@other.test>", 550, "5.7.1").await;
    expect(&mut c, "RCPT TO:<a@ok.test>", 250, "2.1.5").await;
    expect(&mut c, "RSET", 250, "2.0.0").await;

    // The sender's domain is looked up too (for relay_from): a failure
    // there refuses MAIL and starts no transaction.
    expect(&mut c, "MAIL FROM:<a@broken.test>", 451, "4.3.0").await;
    expect(&mut c, "RCPT TO:<a@ok.test>", 503, "5.5.1").await;
    expect(&mut c, "MAIL FROM:<a@refused.test>", 550, "5.7.1").await;
    expect(&mut c, "RCPT TO:<a@ok.test>", 503, "5.5.1").await;
    expect(&mut c, "MAIL FROM:<a@ok.test>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@ok.test>", 250, "2.1.5").await;
}

#[tokio::test]
async fn bad_listener_domain_value_is_a_temporary_failure() {
    let extra = r#"
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  return kumo.make_listener_domain { relay_too = true }
end)
"#;
    let d = start(&policy("relay_hosts = { '127.0.0.2' },", extra));
    let mut c = connect_ehlo(&d).await;
    expect(&mut c, "MAIL FROM:<>", 250, "2.1.0").await;
    expect(&mut c, "RCPT TO:<a@ok.test>", 451, "4.3.0").await;
    let stderr = stderr_with(&d, &["relay_too", "make_listener_domain"]);
    assert!(stderr.contains("relay_too"), "{stderr}");
    assert!(stderr.contains("make_listener_domain"), "{stderr}");
}
