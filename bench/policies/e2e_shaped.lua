-- The end-to-end benchmark's "shaped" variant (bench/e2e.sh VARIANTS=shaped):
-- the plain policy (e2e.lua), but mail leaves from a pool of two loopback
-- sources (127.0.0.2 and 127.0.0.3, weight 1:1) and its egress path comes
-- from policy-extras.shaping, with a shaping file whose limits never bind
-- (bench/policies/e2e_shaping.toml: rates far above the load, 16
-- connections per source under one shared limit of 32, the plain variant's
-- total) and an automation rule every record is matched against. The
-- difference to "plain" is the cost of pools, shaping and automation.
--   IRONPOST_E2E_SHAPING  the shaping file (bench/policies/e2e_shaping.toml)
local kumo = require 'kumo'
local shaping = require 'policy-extras.shaping'
local sources = require 'policy-extras.sources'

local listen = os.getenv('IRONPOST_E2E_LISTEN') or '127.0.0.1:3525'
local sink = os.getenv('IRONPOST_E2E_SINK') or '127.0.0.1:3600'
local data = os.getenv('IRONPOST_E2E_DATA') or './e2e-data'
local shaping_file = os.getenv('IRONPOST_E2E_SHAPING') or 'bench/policies/e2e_shaping.toml'

sources:setup {
  {
    source = {
      ['ip-2'] = { source_address = '127.0.0.2' },
      ['ip-3'] = { source_address = '127.0.0.3' },
    },
    pool = { ['bench'] = { ['ip-2'] = { weight = 1 }, ['ip-3'] = { weight = 1 } } },
  },
}

local shaper = shaping:setup_with_automation {
  no_default_files = true,
  extra_files = { shaping_file },
}
kumo.on('get_egress_path_config', shaper.get_egress_path_config)

kumo.on('init', function()
  kumo.define_spool {
    name = 'data',
    path = data .. '/spool',
    kind = 'LocalDisk',
    flush = true,
  }
  kumo.configure_local_logs {
    log_dir = data .. '/logs',
  }
  kumo.start_esmtp_listener {
    listen = listen,
    relay_hosts = { '127.0.0.1', '::1' },
  }
  kumo.dns.configure_resolver {
    name_servers = { '127.0.0.1:1' },
    options = { timeout = '1s', attempts = 1 },
  }
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    egress_pool = 'bench',
    protocol = { smtp = { mx_list = { sink } } },
  }
end)
