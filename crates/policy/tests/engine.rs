//! The policy engine against real policy files on disk.

use ironpost_policy::{
    ConnMeta, EngineOptions, EventError, Message, PolicyEngine, PolicyError, PolicySource,
};
use std::path::PathBuf;

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let p = dir.path().join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p
}

fn start(
    dir: &tempfile::TempDir,
    policy: &str,
) -> Result<(PolicyEngine, ironpost_policy::InitConfig), PolicyError> {
    let p = write(dir, "policy.lua", policy);
    PolicyEngine::start(
        PolicySource::File(p),
        EngineOptions {
            pool_size: 2,
            ..Default::default()
        },
    )
}

#[test]
fn builtin_default_defines_listener_spool_and_logs() {
    let (_e, init) = PolicyEngine::start(PolicySource::Builtin, EngineOptions::default()).unwrap();
    assert_eq!(init.listeners.len(), 1);
    assert_eq!(init.listeners[0].listen, "127.0.0.1:2525");
    assert_eq!(init.spools[0].path, PathBuf::from("./ironpost-data/spool"));
    assert_eq!(init.logs.len(), 1);
}

#[test]
fn unknown_key_names_key_function_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = start(
        &dir,
        "kumo.on('init', function()\n  kumo.start_esmtp_listener { listen = '127.0.0.1:0', relay_hostz = {} }\nend)\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("relay_hostz"), "{err}");
    assert!(err.contains("kumo.start_esmtp_listener"), "{err}");
    assert!(err.contains("policy.lua:2"), "{err}");
}

#[test]
fn syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = start(&dir, "local x = 1\nlocal y = = 2\n")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("policy.lua:2"), "{err}");
}

#[test]
fn bad_values_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, needle) in [
        ("relay_hosts = { '10.0.0.1/8' }", "relay_hosts"),
        ("client_timeout = 'soon'", "client_timeout"),
        ("invalid_line_endings = 'Sometimes'", "Sometimes"),
        ("listen = 'nowhere'", "listen"),
    ] {
        let policy =
            format!("kumo.on('init', function() kumo.start_esmtp_listener {{ {bad} }} end)");
        let err = start(&dir, &policy).err().unwrap().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
    let err = start(&dir, "kumo.start_esmtp_listener {}")
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("init"), "{err}");
}

#[tokio::test]
async fn reject_and_runtime_errors_in_events() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = start(
        &dir,
        r#"
        kumo.on('smtp_server_message_received', function(msg)
          if msg:sender().domain == 'bad.test' then kumo.reject(550, '5.7.1 go away') end
          if msg:sender().domain == 'boom.test' then local x = nil; x.y = 1 end
          msg:set_meta('seen', true)
          msg:append_header('X-Policy', msg:from_header().domain .. ' ' .. msg:recipients()[1].user)
        end)
        "#,
    )
    .unwrap();
    let msg = |sender: &str| Message {
        id: "1".into(),
        sender: sender.into(),
        recipients: vec!["rcpt@dest.test".into()],
        data: b"From: \"Ann\" <ann@From.Test>\r\nSubject: x\r\n\r\nbody\r\n".to_vec(),
        ..Default::default()
    };
    let out = e
        .message_event("smtp_server_message_received", msg("a@ok.test"), None)
        .await
        .unwrap();
    assert_eq!(out.meta.get("seen"), Some(&serde_json::Value::Bool(true)));
    assert!(String::from_utf8_lossy(&out.data).contains("X-Policy: from.test rcpt\r\n\r\nbody"));
    assert_eq!(
        e.message_event("smtp_server_message_received", msg("a@bad.test"), None)
            .await
            .unwrap_err(),
        EventError::Reject {
            code: 550,
            text: "5.7.1 go away".into()
        }
    );
    match e
        .message_event("smtp_server_message_received", msg("a@boom.test"), None)
        .await
        .unwrap_err()
    {
        EventError::Failed(m) => assert!(m.contains("policy.lua:4"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn listener_domains_helper_and_require_confinement() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir, "domains.toml", "[\"*\"]\nrelay_to = false\n[\"ours.test\"]\nrelay_to = true\n[\"send.test\"]\nrelay_from = [\"10.0.0.0/24\"]\n");
    write(&dir, "lib/util.lua", "return { answer = 42 }");
    let (e, _) = start(
        &dir,
        &format!(
            "local ld = require 'policy-extras.listener_domains'\nlocal u = require 'lib.util'\nassert(u.answer == 42)\nkumo.on('get_listener_domain', ld:setup {{ '{}' }})\n",
            dir.path().join("domains.toml").display()
        ),
    )
    .unwrap();
    let ld = e
        .listener_domain("ours.test".into(), "l".into(), ConnMeta::default())
        .await
        .unwrap()
        .unwrap();
    assert!(ld.relay_to);
    let ld = e
        .listener_domain("other.test".into(), "l".into(), ConnMeta::default())
        .await
        .unwrap()
        .unwrap();
    assert!(!ld.relay_to);
    let ld = e
        .listener_domain("send.test".into(), "l".into(), ConnMeta::default())
        .await
        .unwrap()
        .unwrap();
    assert!(ld.relay_from.contains("10.0.0.7".parse().unwrap()));

    for escape in [
        "require '..secret'",
        "require 'os'",
        "require '/etc/passwd'",
        "io.open('/etc/passwd')",
    ] {
        assert!(start(&dir, escape).is_err(), "{escape}");
    }
    write(&dir, "bad.toml", "[\"x.test\"]\nrelay_too = true\n");
    let err = start(
        &dir,
        &format!(
            "require('policy-extras.listener_domains'):setup {{ '{}' }}",
            dir.path().join("bad.toml").display()
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("bad.toml") && err.contains("x.test") && err.contains("relay_too"),
        "{err}"
    );
}

/// Seed 000's pattern: an HTTP request with Basic credentials whose password
/// comes from a keysource, against a real HTTP server on loopback.
#[tokio::test(flavor = "multi_thread")]
async fn http_client_with_basic_auth_from_a_keysource() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        let req = String::from_utf8_lossy(&buf[..n]).to_string();
        // base64("username:s3cret")
        let ok = req.contains("authorization: Basic dXNlcm5hbWU6czNjcmV0")
            || req.contains("Authorization: Basic dXNlcm5hbWU6czNjcmV0");
        let (status, body) = if ok {
            ("200 OK", "welcome")
        } else {
            ("401 Unauthorized", "no")
        };
        write!(s, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nX-Test: yes\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let pw = write(&dir, "pw", "s3cret");
    let (e, _) = start(
        &dir,
        &format!(
            r#"
kumo.on('smtp_server_message_received', function(msg)
  local request = kumo.http.build_client({{}}):get 'http://{addr}/check'
  local passwd = kumo.secrets.load '{}'
  request:basic_auth('username', passwd)
  local response = request:send()
  msg:set_meta('status', response:status_code())
  msg:set_meta('body', response:text())
  msg:set_meta('header', response:headers()['x-test'])
end)
"#,
            pw.display()
        ),
    )
    .unwrap();
    let out = e
        .message_event(
            "smtp_server_message_received",
            Message {
                data: b"Subject: x\r\n\r\n".to_vec(),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    server.join().unwrap();
    assert_eq!(out.meta["status"], 200);
    assert_eq!(out.meta["body"], "welcome");
    assert_eq!(out.meta["header"], "yes");
}
