-- Ironpost policy for the inbound (acceptance) benchmark, bench/inbound.sh.
--
-- Same shape as the built-in default policy: one listener relaying for
-- loopback clients, a durable spool (flush = true: fdatasync before 250) and
-- local logs (kept on, so the figure includes the cost of logging).
--
-- Builds with the delivery engine also deliver what they accept. Everything is
-- then routed to the benchmark's smtp-sink on loopback, like the Postfix side
-- (relayhost = [127.0.0.1]:sink), and DNS is pointed at a loopback port where
-- nothing answers, so no lookup and no delivery can leave the machine.
-- Builds without the delivery engine only spool; the delivery part is skipped.
--
-- The harness passes addresses and the data directory through the environment
-- (the sandbox allows os.getenv); the defaults make the file usable by hand:
--   IRONPOST_BENCH_LISTEN  listen address    (default 127.0.0.1:2525)
--   IRONPOST_BENCH_SINK    smtp-sink address (default 127.0.0.1:2600)
--   IRONPOST_BENCH_DATA    spool/log parent  (default ./bench-data)
-- The data directory must be on a real disk, not tmpfs, or fdatasync is free.
local kumo = require 'kumo'

local listen = os.getenv('IRONPOST_BENCH_LISTEN') or '127.0.0.1:2525'
local sink = os.getenv('IRONPOST_BENCH_SINK') or '127.0.0.1:2600'
local data = os.getenv('IRONPOST_BENCH_DATA') or './bench-data'

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

  if kumo.dns and kumo.dns.configure_resolver then
    -- Nothing needs DNS (mx_list below is an address); if anything asks
    -- anyway, it fails on loopback instead of querying the real resolver.
    kumo.dns.configure_resolver {
      name_servers = { '127.0.0.1:1' },
      options = { timeout = '1s', attempts = 1 },
    }
  end
end)

if kumo.make_queue_config then
  -- Every destination domain (including DSNs) goes to the sink.
  kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
    return kumo.make_queue_config {
      protocol = { smtp = { mx_list = { sink } } },
    }
  end)

  -- Defaults except what loopback delivery needs: loopback is prohibited by
  -- default, and the sink offers no TLS and has no MTA-STS policy.
  kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
    return kumo.make_egress_path {
      prohibited_hosts = {},
      enable_tls = 'Disabled',
      enable_mta_sts = false,
    }
  end)
end
