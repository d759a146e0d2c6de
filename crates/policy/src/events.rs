//! Which KumoMTA events Ironpost dispatches. A policy may bind any name of
//! its own with `kumo.on` (and fire it from its own code), but binding a
//! system event that KumoMTA documents and Ironpost does not dispatch is
//! refused at start: a handler that never runs would silently do less than
//! the policy says.
//!
//! The names are those of KumoMTA's events reference
//! (docs/reference/events/ in KumoCorp/kumomta).

/// Events Ironpost dispatches, with KumoMTA's arguments and return
/// conventions.
pub const DISPATCHED: &[&str] = &[
    "pre_init",
    "init",
    "smtp_server_connection_accepted",
    "smtp_server_ehlo",
    "smtp_server_auth_plain",
    "smtp_server_mail_from",
    "smtp_server_rcpt_to",
    "smtp_server_data",
    "smtp_server_message_received",
    "http_message_generated",
    "http_server_validate_auth_basic",
    "get_listener_domain",
    "get_queue_config",
    "get_egress_path_config",
    "get_egress_source",
    "get_egress_pool",
    "should_enqueue_log_record",
    "smtp_client_rewrite_delivery_status",
    "requeue_message",
];

/// KumoMTA system events Ironpost does not dispatch, and why.
pub const REFUSED: &[(&str, &str)] = &[
    (
        "get_acl_definition",
        "the HTTP access-control lists are not implemented",
    ),
    (
        "proxy_init",
        "the SOCKS5 proxy server is not part of Ironpost",
    ),
    (
        "proxy_server_auth_rfc1929",
        "the SOCKS5 proxy server is not part of Ironpost",
    ),
    (
        "rebind_message",
        "rebinding queued messages is not implemented",
    ),
    (
        "shutdown_logging",
        "the shutdown event for logging is not dispatched",
    ),
    (
        "smtp_server_get_dynamic_parameters",
        "dynamic listener parameters are not implemented",
    ),
    (
        "smtp_server_message_deferred_inject",
        "deferred spooling at reception is not implemented",
    ),
    (
        "smtp_server_rewrite_response",
        "rewriting SMTP responses is not implemented",
    ),
    (
        "smtp_server_split_transaction",
        "splitting transactions by policy is not implemented",
    ),
    (
        "spool_message_enumerated",
        "spool enumeration events are not implemented",
    ),
    (
        "throttle_insert_ready_queue",
        "throttles are not implemented yet",
    ),
    (
        "tsa_init",
        "the traffic shaping automation daemon is not part of Ironpost",
    ),
    (
        "tsa_load_shaping_data",
        "the traffic shaping automation daemon is not part of Ironpost",
    ),
    (
        "xfer_message_received",
        "message transfer between nodes is not implemented",
    ),
];

/// Whether a policy may bind `name`: `Err` with the reason for a KumoMTA
/// system event Ironpost does not dispatch.
pub fn check_binding(name: &str) -> Result<(), String> {
    match REFUSED.iter().find(|(n, _)| *n == name) {
        Some((_, why)) => Err(format!(
            "Ironpost does not support the KumoMTA event '{name}' ({why}); \
             a handler for it would never run"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_disjoint_and_custom_names_are_free() {
        for (name, _) in REFUSED {
            assert!(!DISPATCHED.contains(name), "{name}");
            assert!(check_binding(name).unwrap_err().contains(name));
        }
        for name in DISPATCHED {
            assert!(check_binding(name).is_ok());
        }
        assert!(check_binding("my.own.event").is_ok());
    }
}
