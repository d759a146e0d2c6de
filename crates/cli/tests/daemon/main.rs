//! Integration tests of the `ironpost` binary, one test binary with a
//! module per topic: every test starts the real daemon (or runs one of
//! its commands) and talks to it over loopback. `common` holds the
//! reception helpers, `delivery_common` those of the delivery suites.

mod common;
mod delivery_common;

mod auth_tenants;
mod check_cmd;
mod client_certs;
mod cluster;
mod crash_records;
mod crash_recovery;
mod default_policy;
mod delivery_auth;
mod delivery_classify;
mod delivery_dane;
mod delivery_idle;
mod delivery_mta_sts;
mod delivery_peers;
mod delivery_queue;
mod delivery_restart;
mod delivery_retry;
mod delivery_rewrite;
mod delivery_routing;
mod delivery_shaping;
mod delivery_shared_site;
mod delivery_sources;
mod delivery_tls;
mod diagnostics;
mod dkim_cli;
mod dkim_signing;
mod http_admin;
mod inbound_auth;
mod inflight_memory;
mod kumomta_corpus;
mod limits;
mod log_hooks;
mod open_relay;
mod policy_errors;
mod policy_routing;
mod posture;
mod privilege_drop;
mod signer_process;
mod smtp_commands;
mod smtp_events;
mod smuggling;
mod spool_compat;
mod starttls;
mod tls_reports;
mod vault_seeds;
