-- bench/e2e.sh VARIANT=ed25519: the e2e policy plus one Ed25519 DKIM
-- signature per message (kumo.dkim.ed25519_signer).
--
-- The key is made by the harness with
--   ironpost dkim keygen --domain example.test --selector ed --algo ed25519 --out $IRONPOST_E2E_DKIM_DIR
-- and read from $IRONPOST_E2E_DKIM_DIR/example.test/ed.key. The signer is
-- built per message, as in the KumoMTA examples; the key is loaded once and
-- cached for the signer's ttl, so what is measured is the signing itself.
local kumo = require 'kumo'
require 'e2e'

local dkim_dir = os.getenv('IRONPOST_E2E_DKIM_DIR') or './e2e-dkim'
local headers = { 'From', 'To', 'Subject', 'Date', 'Message-ID' }

kumo.on('smtp_server_message_received', function(msg)
  msg:dkim_sign(kumo.dkim.ed25519_signer {
    domain = 'example.test',
    selector = 'ed',
    headers = headers,
    key = dkim_dir .. '/example.test/ed.key',
    ttl = '5m',
  })
end)
