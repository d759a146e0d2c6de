//! KumoMTA options Ironpost runs differently are announced, not dropped.

mod common;

use ironpost_policy::{EngineOptions, PolicyEngine, PolicySource};

fn init(policy: &str) -> Result<ironpost_policy::InitConfig, String> {
    common::start(policy).map(|(_, init)| init)
}

/// KumoMTA's define_spool reference (docs/reference/kumo/define_spool/
/// rocks_params.md): a RocksDB spool with tuning parameters.
#[test]
fn a_rocksdb_spool_runs_on_our_spool_and_says_so() {
    let init = init(
        r#"local kumo = require 'kumo'
kumo.on('init', function()
  local params = { increase_parallelism = 4, optimize_level_style_compaction = 64 * 1024 * 1024 }
  kumo.define_spool { name = 'data', path = '/var/spool/kumo/data', kind = 'RocksDB', rocks_params = params }
  kumo.define_spool { name = 'meta', path = '/var/spool/kumo/meta', kind = 'RocksDB' }
end)
"#,
    )
    .unwrap();
    let data = init.spools.iter().find(|s| s.name == "data").unwrap();
    let notice = data.kind_notice().unwrap();
    assert!(notice.contains("RocksDB"), "{notice}");
    assert!(notice.contains("increase_parallelism"), "{notice}");
    assert!(
        notice.contains("optimize_level_style_compaction"),
        "{notice}"
    );
    let meta = init.spools.iter().find(|s| s.name == "meta").unwrap();
    assert!(meta.kind_notice().unwrap().contains("'meta'"));
}

#[test]
fn unknown_spool_kinds_and_misplaced_rocks_params_are_refused() {
    let err = init(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool { name = 'data', path = '/x', kind = 'Redis' }\nend)\n",
    )
    .unwrap_err();
    assert!(
        err.contains("kind") && err.contains("policy.lua:3"),
        "{err}"
    );
    let err = init(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.define_spool { name = 'data', path = '/x', rocks_params = { a = 1 } }\nend)\n",
    )
    .unwrap_err();
    assert!(err.contains("rocks_params"), "{err}");
}

/// Sources and pools parse KumoMTA's options; the ones Ironpost cannot
/// honour (proxies) are refused by name, and a misspelt key is an error.
#[test]
fn egress_sources_and_pools_are_checked_when_made() {
    let err = |call: &str| {
        init(&format!(
            "local kumo = require 'kumo'\nkumo.on('init', function()\n  {call}\nend)\n"
        ))
        .unwrap_err()
    };
    init(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  \
         kumo.make_queue_config { egress_pool = 'pool-1' }\n  \
         kumo.make_egress_source { name = 'ip-1', source_address = '127.0.0.2', ehlo_domain = 'mta1.test', ttl = '5 mins' }\n  \
         kumo.make_egress_pool { name = 'pool-1', entries = { { name = 'ip-1', weight = 2 }, { name = 'ip-2' } } }\nend)\n",
    )
    .unwrap();
    let e = err("kumo.make_egress_source { name = 'x', ha_proxy_server = '10.0.0.1:5000' }");
    assert!(
        e.contains("ha_proxy_server") && e.contains("proxies"),
        "{e}"
    );
    let e = err("kumo.make_egress_source { name = 'x', source_address = 'not-an-ip' }");
    assert!(e.contains("source_address"), "{e}");
    let e = err("kumo.make_egress_pool { name = 'p', entries = { { name = 'a', wieght = 2 } } }");
    assert!(e.contains("wieght"), "{e}");
}

#[test]
fn policy_utils_helpers_behave_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.toml"), "a = 1\n[t]\nb = 'x'\n").unwrap();
    let policy = format!(
        r#"local kumo = require 'kumo'
local utils = require 'policy-extras.policy_utils'
local dest = {{ a = 1, nested = {{ x = 1 }} }}
utils.merge_into({{ b = 2 }}, dest)
utils.recursive_merge_into({{ nested = {{ y = 2 }} }}, dest)
utils.assert_eq(dest, {{ a = 1, b = 2, nested = {{ x = 1, y = 2 }} }}, 'merge')
assert(utils.ends_with('mail.example.com', '.example.com'))
assert(not utils.ends_with('example.com', '.example.com'))
assert(utils.starts_with('gmail.com', 'gmail'))
assert(utils.table_contains({{ 'a', 'b' }}, 'b') and not utils.table_contains({{}}, nil))
assert(utils.table_is_empty({{}}) and #utils.table_keys({{ x = 1, y = 2 }}) == 2)
local ip, port = utils.split_ip_port('[::1]:25')
assert(ip == '::1' and port == '25')
local data = utils.load_json_or_toml_file('{}/data.toml')
assert(data.a == 1 and data.t.b == 'x')
utils.assert_matches('abc123', '%d+')
local ok = pcall(utils.assert_ne, {{ 1 }}, {{ 1 }})
assert(not ok)
assert(utils.dumps({{ k = 'v' }}):find('k = "v"'))
"#,
        dir.path().display()
    );
    init(&policy).unwrap();
}

#[test]
fn unsupported_kumomta_helpers_are_refused_by_name() {
    for helper in ["policy-extras.docker_utils", "policy-extras.rollup"] {
        let err = init(&format!(
            "local kumo = require 'kumo'\nlocal h = require '{helper}'\n"
        ))
        .unwrap_err();
        assert!(err.contains(helper), "{err}");
        assert!(err.contains("Ironpost does not support"), "{err}");
        assert!(err.contains("policy.lua:2"), "{err}");
    }
}

#[test]
fn make_listener_domain_refuses_oob_and_arf_logging() {
    let err = init(
        "local kumo = require 'kumo'\nlocal d = kumo.make_listener_domain { relay_to = true, log_oob = true }\n",
    )
    .unwrap_err();
    assert!(
        err.contains("log_oob") && err.contains("Ironpost does not support"),
        "{err}"
    );
    init("local kumo = require 'kumo'\nlocal d = kumo.make_listener_domain { log_arf = 'Ignore', log_oob = false }\n")
        .unwrap();
}

#[test]
fn the_rest_of_the_kumo_api_is_named_when_touched() {
    for (call, needle) in [
        ("kumo.domain_map.new {}", "kumo.domain_map.new"),
        ("kumo.make_message('x')", "kumo.make_message"),
        ("kumo.api.inject.inject_v1 {}", "kumo.api.inject"),
    ] {
        let err = init(&format!(
            "local kumo = require 'kumo'\nkumo.on('init', function()\n  {call}\nend)\n"
        ))
        .unwrap_err();
        assert!(err.contains(needle), "{call}: {err}");
        assert!(err.contains("Ironpost does not support"), "{err}");
        assert!(err.contains("policy.lua:3"), "{err}");
    }
    init(
        "local kumo = require 'kumo'\n\
         kumo.set_smtpsrv_threads(8)\n\
         kumo.log_info('hello', 1)\n\
         assert(kumo.available_parallelism() >= 1)\n\
         assert(kumo.version():find('ironpost'))\n",
    )
    .unwrap();
}

/// `setup_with_automation{ no_default_files = true, extra_files = ... }`
/// answers from the policy's own files.
#[tokio::test]
async fn shaping_setup_with_automation() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("shaping.toml");
    std::fs::write(
        &toml,
        "[\"default\"]\nconnection_limit = 3\n\n[\"gmail.com\"]\nenable_tls = \"Required\"\n",
    )
    .unwrap();
    let p = dir.path().join("policy.lua");
    std::fs::write(
        &p,
        format!(
            "local kumo = require 'kumo'\nlocal shaping = require 'policy-extras.shaping'\n\
             local shaper = shaping:setup_with_automation {{ no_default_files = true, extra_files = {{ '{}' }} }}\n\
             kumo.on('get_egress_path_config', shaper.get_egress_path_config)\n",
            toml.display()
        ),
    )
    .unwrap();
    let (e, _) = PolicyEngine::start(PolicySource::File(p), EngineOptions::default()).unwrap();
    let cfg = e
        .egress_path(
            "gmail.com".into(),
            "unspecified".into(),
            "mx.gmail.test".into(),
        )
        .await
        .unwrap();
    assert_eq!(cfg.connection_limit, 3);
    assert_eq!(cfg.enable_tls, ironpost_policy::TlsMode::Required);
    // KumoMTA's daemon plumbing is accepted (automation runs in process);
    // an option Ironpost lacks is refused by name.
    init(
        "local shaping = require 'policy-extras.shaping'\nlocal s = shaping:setup_with_automation { publish = { 'http://127.0.0.1:8008' }, subscribe = { 'http://127.0.0.1:8008' } }\nkumo.on('init', function() s.setup_publish() end)\n",
    )
    .unwrap();
    let err = init(
        "local shaping = require 'policy-extras.shaping'\nlocal s = shaping:setup_with_automation { no_default_files = true, frobnicate = true }\n",
    )
    .unwrap_err();
    assert!(
        err.contains("frobnicate") && err.contains("Ironpost does not support"),
        "{err}"
    );
}

/// A log hook's records are messages: per_record options for files are
/// refused there, not ignored.
#[test]
fn log_hook_per_record_takes_only_enable() {
    let err = init(
        "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.configure_log_hook { name = 'h', per_record = { Delivery = { suffix = '_d' } } }\nend)\nkumo.on('should_enqueue_log_record', function() return false end)\n",
    )
    .unwrap_err();
    assert!(
        err.contains("per_record.Delivery") && err.contains("policy.lua:3"),
        "{err}"
    );
    init("local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.configure_log_hook { name = 'h', per_record = { Any = { enable = false } } }\nend)\n")
        .unwrap();
}

/// `kumo.make_throttle`: KumoMTA's throttle object, node-local here (no
/// Redis): `throttle()` reports as documented, throttles of one name are
/// one throttle, `sleep_if_throttled` waits for the next slot.
#[test]
fn make_throttle_objects() {
    init(
        "local kumo = require 'kumo'\n\
         local t = kumo.make_throttle('reception', '2/s')\n\
         local a, b = t:throttle(), kumo.make_throttle('reception', '2/s'):throttle()\n\
         assert(not a.throttled and not b.throttled, 'a burst of 2 passes')\n\
         assert(a.limit == 2 and a.remaining == 1 and b.remaining == 0, 'remaining')\n\
         local c = t:throttle()\n\
         assert(c.throttled and c.retry_after > 0 and c.retry_after <= 0.5, 'the third waits')\n\
         assert(t:sleep_if_throttled() == true, 'slept')\n\
         assert(kumo.make_throttle('other', 'local:1/h'):sleep_if_throttled() == false)\n\
         local ok, err = pcall(kumo.make_throttle, 'bad', '2/fortnight')\n\
         assert(not ok and tostring(err):find('fortnight'))\n",
    )
    .unwrap();
}

/// `kumo.configure_redis_throttles` takes `redis.open`'s parameters; what
/// Ironpost cannot do (a Redis Cluster, TLS) is refused naming the key.
#[test]
fn configure_redis_throttles_options() {
    let init_with = |opts: &str| {
        init(&format!(
            "local kumo = require 'kumo'\nkumo.on('init', function()\n  kumo.configure_redis_throttles {opts}\nend)\n"
        ))
    };
    let ok = init_with(
        "{ node = 'redis://my-redis-host/', username = 'u', password = { key_data = 'p' }, \
         connect_timeout = '5s', response_timeout = '150ms', pool_size = 20 }",
    )
    .unwrap();
    let r = ok.redis_throttles.expect("configured");
    assert_eq!(r.node_url().unwrap(), "redis://my-redis-host/");
    assert_eq!(r.without_effect(), ["pool_size"]);
    for (opts, needle) in [
        ("{ node = { 'redis://a/', 'redis://b/' } }", "Redis Cluster"),
        ("{ node = 'redis://a/', cluster = true }", "cluster"),
        ("{ node = 'rediss://a/' }", "rediss"),
        ("{ node = 'redis://a/', pool = 3 }", "pool"),
    ] {
        let e = init_with(opts).unwrap_err();
        assert!(
            e.contains("configure_redis_throttles") && e.contains(needle),
            "{opts}: {e}"
        );
    }
}
