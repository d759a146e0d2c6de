-- Ironpost policy, installed by the Debian package as a conffile:
-- /etc/ironpost/policy.lua (edits survive upgrades). The KumoMTA policy API
-- applies: see README.md.
--
-- As installed, Ironpost accepts mail on port 25 of every address but
-- relays only for clients on this machine (a submission relay for local
-- programs); it offers STARTTLS with a self-signed certificate until you
-- give it one, and delivers by MX. Add `relay_hosts`, listener domains or
-- SMTP AUTH to accept more.
--
-- Paths: spool /var/spool/ironpost, logs /var/log/ironpost (owned by the
-- ironpost user, mode 2770); keys belong in /etc/ironpost/dkim (root:ironpost,
-- 2750: readable by the daemon, written only by root). Check your changes
-- with `ironpost check` before `systemctl reload` or `restart`.
local kumo = require 'kumo'

kumo.on('init', function()
  kumo.define_spool {
    name = 'data',
    path = '/var/spool/ironpost/data',
    kind = 'LocalDisk',
    flush = true,
  }

  kumo.configure_local_logs {
    log_dir = '/var/log/ironpost',
  }

  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
    relay_hosts = { '127.0.0.1', '::1' },
    -- With a certificate (re-read on `systemctl reload`):
    -- tls_certificate = '/etc/ironpost/tls/cert.pem',
    -- tls_private_key = '/etc/ironpost/tls/key.pem',
  }
end)
