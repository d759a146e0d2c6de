-- Ironpost policy for the end-to-end benchmark, bench/e2e.sh:
--   smtp-source -> Ironpost -> smtp-sink, all on loopback.
--
-- Same shape as the built-in default policy: one listener relaying for
-- loopback clients, a durable spool (flush = true: fdatasync before 250) and
-- local logs (on: the p50/p99 time from 250 to delivery is computed from the
-- Reception and Delivery records). Every destination domain is routed to the
-- benchmark's smtp-sink (mx_list), loopback is allowed as a destination, no
-- TLS. DNS points at a loopback port where nothing answers, so nothing can
-- leave the machine (the authn variant points it at the harness's loopback
-- DNS server instead).
--
-- The harness passes addresses and paths through the environment (the sandbox
-- allows os.getenv); the defaults make the file usable by hand:
--   IRONPOST_E2E_LISTEN      listen address          (127.0.0.1:3525)
--   IRONPOST_E2E_SINK        smtp-sink address       (127.0.0.1:3600)
--   IRONPOST_E2E_DATA        spool/log parent        (./e2e-data; real disk)
--   IRONPOST_E2E_CONN_LIMIT  egress connection_limit (32)
--   IRONPOST_E2E_DNS         the resolver's name server (127.0.0.1:1, where
--                            nothing answers; a loopback server for authn)
--
-- The DKIM variants (e2e_dkim_*.lua) require this file and add signing;
-- e2e_authn.lua adds the inbound checks (mail_auth.check).
local kumo = require 'kumo'

local listen = os.getenv('IRONPOST_E2E_LISTEN') or '127.0.0.1:3525'
local sink = os.getenv('IRONPOST_E2E_SINK') or '127.0.0.1:3600'
local data = os.getenv('IRONPOST_E2E_DATA') or './e2e-data'
local conn_limit = tonumber(os.getenv('IRONPOST_E2E_CONN_LIMIT') or '32')
local dns = os.getenv('IRONPOST_E2E_DNS') or '127.0.0.1:1'
-- TLS=1 in bench/e2e.sh: STARTTLS to the sink, required but not verified
-- (the sink's certificate is self-signed), as Postfix's
-- smtp_tls_security_level = encrypt. The listener offers STARTTLS always
-- (a self-signed certificate when the policy names none).
local enable_tls = os.getenv('IRONPOST_E2E_TLS') == '1' and 'RequiredInsecure' or 'Disabled'

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

  -- Delivery needs no DNS (mx_list is an address); if anything asks anyway,
  -- it fails on loopback instead of querying the real resolver. The authn
  -- variant's checks ask the harness's loopback server (IRONPOST_E2E_DNS).
  kumo.dns.configure_resolver {
    name_servers = { dns },
    options = { timeout = '1s', attempts = 1 },
  }
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {
    protocol = { smtp = { mx_list = { sink } } },
  }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = enable_tls,
    enable_mta_sts = false,
    prohibited_hosts = {},
    connection_limit = conn_limit,
  }
end)
