-- bench/e2e.sh VARIANT=both: the e2e policy plus two DKIM signatures per
-- message, RSA-2048 (kumo.dkim.rsa_sha256_signer) then Ed25519
-- (kumo.dkim.ed25519_signer).
--
-- Keys are made by the harness with `ironpost dkim keygen` (--algo rsa, 2048
-- bits, selector rsa; --algo ed25519, selector ed) under
-- $IRONPOST_E2E_DKIM_DIR/example.test/. Signers are built per message; keys
-- are cached for the signer's ttl, so what is measured is the signing itself.
local kumo = require 'kumo'
require 'e2e'

local dkim_dir = os.getenv('IRONPOST_E2E_DKIM_DIR') or './e2e-dkim'
local headers = { 'From', 'To', 'Subject', 'Date', 'Message-ID' }

kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.rsa_sha256_signer {
    domain = 'example.test',
    selector = 'rsa',
    headers = headers,
    key = dkim_dir .. '/example.test/rsa.key',
    ttl = '5m',
  })
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = 'example.test',
    selector = 'ed',
    headers = headers,
    key = dkim_dir .. '/example.test/ed.key',
    ttl = '5m',
  })
end)
