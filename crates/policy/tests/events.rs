//! Every event that KumoMTA's events reference documents is either
//! dispatched by Ironpost or refused when the policy binds it, with the
//! file and line of the `kumo.on` call. A policy's own event names stay
//! free.
//!
//! The list below is KumoMTA's docs/reference/events/ directory (one page
//! per event), read from KumoCorp/kumomta, plus `main`, which only
//! standalone Lua scripts use.

use ironpost_policy::events::{DISPATCHED, REFUSED};
mod common;

use ironpost_policy::PolicyEngine;

fn start(policy: &str) -> Result<(), String> {
    common::start(policy).map(|_| ())
}

fn engine(policy: &str) -> PolicyEngine {
    common::start(policy).unwrap().0
}

const KUMOMTA_EVENTS: &[&str] = &[
    "get_acl_definition",
    "get_egress_path_config",
    "get_egress_pool",
    "get_egress_source",
    "get_listener_domain",
    "get_queue_config",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "init",
    "pre_init",
    "proxy_init",
    "proxy_server_auth_rfc1929",
    "rebind_message",
    "requeue_message",
    "should_enqueue_log_record",
    "shutdown_logging",
    "smtp_client_rewrite_delivery_status",
    "smtp_server_auth_plain",
    "smtp_server_connection_accepted",
    "smtp_server_data",
    "smtp_server_ehlo",
    "smtp_server_get_dynamic_parameters",
    "smtp_server_mail_from",
    "smtp_server_message_deferred_inject",
    "smtp_server_message_received",
    "smtp_server_rcpt_to",
    "smtp_server_rewrite_response",
    "smtp_server_split_transaction",
    "spool_message_enumerated",
    "throttle_insert_ready_queue",
    "tsa_init",
    "tsa_load_shaping_data",
    "xfer_message_received",
];

#[test]
fn each_documented_event_is_dispatched_or_refused_at_start() {
    for event in KUMOMTA_EVENTS {
        let dispatched = DISPATCHED.contains(event);
        let refused = REFUSED.iter().any(|(n, _)| n == event);
        assert!(
            dispatched ^ refused,
            "{event}: dispatched={dispatched} refused={refused}"
        );
        let result = start(&format!(
            "local kumo = require 'kumo'\n-- line 2\nkumo.on('{event}', function() end)\n"
        ));
        if dispatched {
            assert!(result.is_ok(), "{event}: {result:?}");
        } else {
            let err = result.expect_err(event);
            assert!(err.contains(event), "{err}");
            assert!(err.contains("Ironpost does not support"), "{err}");
            assert!(err.contains("policy.lua:3"), "names file and line: {err}");
        }
    }
    // Nothing is listed that KumoMTA does not document.
    for name in DISPATCHED.iter().chain(REFUSED.iter().map(|(n, _)| n)) {
        assert!(KUMOMTA_EVENTS.contains(name), "{name}");
    }
}

#[test]
fn own_event_names_are_free() {
    start(
        "local kumo = require 'kumo'\n\
         kumo.on('x_my.lookup', function(a) return a + 1 end)\n\
         kumo.on('init', function() end)\n",
    )
    .unwrap();
}

#[test]
fn every_pre_init_handler_runs_before_init() {
    let err = start(
        "local kumo = require 'kumo'\n\
         local order = {}\n\
         kumo.on('pre_init', function() table.insert(order, 'a') end)\n\
         kumo.on('pre_init', function() table.insert(order, 'b') end)\n\
         kumo.on('init', function() error('order=' .. table.concat(order, ',')) end)\n",
    )
    .unwrap_err();
    assert!(err.contains("order=a,b"), "{err}");
}

/// KumoMTA's AuthInfo return (kumo.aaa), as well as a boolean.
#[tokio::test]
async fn auth_handlers_may_return_an_auth_info_table() {
    use ironpost_policy::{AuthDecision, ConnMeta};
    let e = engine(
        r#"local kumo = require 'kumo'
kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  if password ~= 'tiger' then return false end
  return {
    identities = {
      { identity = authz, context = 'SmtpAuthPlainAuthorization' },
      { identity = authc, context = 'SmtpAuthPlainAuthentication' },
    },
    groups = { 'group1' },
  }
end)
kumo.on('http_server_validate_auth_basic', function(user, password)
  if password == 'bad-key' then return { identities = {}, colour = 'red' } end
  return { identities = { user } }
end)
"#,
    );
    let d = e
        .auth_plain(
            "boss".into(),
            "daniel".into(),
            "tiger".into(),
            ConnMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        d,
        AuthDecision::Allowed {
            identities: vec!["boss".into(), "daniel".into()]
        }
    );
    let d = e
        .auth_plain(
            "".into(),
            "daniel".into(),
            "nope".into(),
            ConnMeta::default(),
        )
        .await
        .unwrap();
    assert_eq!(d, AuthDecision::Denied);
    assert!(e.validate_http_basic("u".into(), "k".into()).await.unwrap());
    let err = e
        .validate_http_basic("u".into(), "bad-key".into())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("colour"), "{err}");
}
