-- Policy for bench/cluster.sh: one node of a two-node Ironpost cluster,
-- relaying to the benchmark's smtp-sink, with traffic shaping whose limits
-- never bind. IRONPOST_CLUSTER_REDIS set: the rates and connection limits
-- are shared through that Redis; unset: each node's own (the baseline).
--   IRONPOST_E2E_LISTEN, IRONPOST_E2E_SINK, IRONPOST_E2E_DATA as in e2e.lua
--   IRONPOST_CLUSTER_REDIS   redis://127.0.0.1:PORT/ (or empty)
--   IRONPOST_CLUSTER_SHAPING the shaping file (bench/policies/cluster_shaping.toml)
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'

local listen = os.getenv('IRONPOST_E2E_LISTEN') or '127.0.0.1:3525'
local sink = os.getenv('IRONPOST_E2E_SINK') or '127.0.0.1:3600'
local data = os.getenv('IRONPOST_E2E_DATA') or './cluster-data'
local redis = os.getenv('IRONPOST_CLUSTER_REDIS') or ''
local shaping_file = os.getenv('IRONPOST_CLUSTER_SHAPING') or 'bench/policies/cluster_shaping.toml'
-- An admin listener, for looking at a run (GET /api/admin/shared-limits/v1).
local http = os.getenv('IRONPOST_CLUSTER_HTTP') or ''

local shaper = shaping:setup_with_automation {
  no_default_files = true,
  extra_files = { shaping_file },
}
kumo.on('get_egress_path_config', shaper.get_egress_path_config)

kumo.on('init', function()
  kumo.define_spool { name = 'data', path = data .. '/spool', kind = 'LocalDisk', flush = true }
  kumo.configure_local_logs { log_dir = data .. '/logs' }
  kumo.start_esmtp_listener { listen = listen, relay_hosts = { '127.0.0.1', '::1' } }
  kumo.dns.configure_resolver {
    name_servers = { '127.0.0.1:1' },
    options = { timeout = '1s', attempts = 1 },
  }
  if http ~= '' then
    kumo.start_http_listener { listen = http, trusted_hosts = { '127.0.0.1' } }
  end
  if redis ~= '' then
    kumo.configure_redis_throttles { node = redis }
  end
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { smtp = { mx_list = { sink } } },
  }
end)
