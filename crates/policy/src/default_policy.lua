-- Ironpost built-in default policy.
--
-- Used by `ironpost serve` when no --policy is given. Copy it with
-- `ironpost serve --print-default-policy > policy.lua` to start your own.
--
-- It accepts mail on 127.0.0.1:2525, relays only for clients on loopback,
-- offers STARTTLS with a self-signed certificate generated in memory, and
-- keeps the spool and logs under ./ironpost-data/.
local kumo = require 'kumo'

kumo.on('init', function()
  kumo.define_spool {
    name = 'data',
    path = './ironpost-data/spool',
    kind = 'LocalDisk',
    flush = true,
  }

  kumo.configure_local_logs {
    log_dir = './ironpost-data/logs',
  }

  kumo.start_esmtp_listener {
    listen = '127.0.0.1:2525',
    relay_hosts = { '127.0.0.1', '::1' },
  }
end)
