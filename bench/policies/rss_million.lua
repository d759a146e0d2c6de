-- Ironpost policy for bench/rss_million.sh: a million small messages queued
-- for a destination that cannot be reached, to measure the daemon's memory
-- with a large queue.
--
-- Listener relaying for loopback, durable spool (flush = true), logs on unless
-- IRONPOST_RSS_LOGS=0, an HTTP admin listener on loopback (queue summary,
-- suspend). Every domain routes to IRONPOST_RSS_DEAD, a loopback port where
-- nothing listens: each first attempt fails at once (connection refused) and
-- the message waits retry_interval = 1h, so all of them stay queued.
--   IRONPOST_RSS_LISTEN  SMTP listen address   (127.0.0.1:3535)
--   IRONPOST_RSS_HTTP    HTTP admin address    (127.0.0.1:3580)
--   IRONPOST_RSS_DEAD    unreachable "MX"      (127.0.0.1:3599)
--   IRONPOST_RSS_DATA    spool/log parent      (./rss-data; real disk)
--   IRONPOST_RSS_LOGS    1 (default) or 0
local kumo = require 'kumo'

local listen = os.getenv('IRONPOST_RSS_LISTEN') or '127.0.0.1:3535'
local http = os.getenv('IRONPOST_RSS_HTTP') or '127.0.0.1:3580'
local dead = os.getenv('IRONPOST_RSS_DEAD') or '127.0.0.1:3599'
local data = os.getenv('IRONPOST_RSS_DATA') or './rss-data'
local logs = (os.getenv('IRONPOST_RSS_LOGS') or '1') ~= '0'

kumo.on('init', function()
  kumo.define_spool {
    name = 'data',
    path = data .. '/spool',
    kind = 'LocalDisk',
    flush = true,
  }

  if logs then
    kumo.configure_local_logs {
      log_dir = data .. '/logs',
    }
  end

  kumo.start_esmtp_listener {
    listen = listen,
    relay_hosts = { '127.0.0.1', '::1' },
  }

  kumo.start_http_listener {
    listen = http,
    trusted_hosts = { '127.0.0.1', '::1' },
  }

  kumo.dns.configure_resolver {
    name_servers = { '127.0.0.1:1' },
    options = { timeout = '1s', attempts = 1 },
  }
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    retry_interval = '1h',
    protocol = { smtp = { mx_list = { dead } } },
  }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Disabled',
    enable_mta_sts = false,
    prohibited_hosts = {},
  }
end)
