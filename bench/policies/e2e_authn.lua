-- bench/e2e.sh VARIANT=authn: the e2e policy plus the inbound checks of
-- policy-extras.mail_auth on every message, as an operator writes them:
-- DKIM verification, SPF, iprev, DMARC and ARC, and our
-- Authentication-Results header added to the message. Nothing is refused:
-- the variant measures the checks, not a decision.
--
-- The harness serves the DNS the checks ask for on loopback
-- (crates/testkit/examples/e2e_dns.rs: SPF, DMARC, PTR and A for
-- bench@example.test from 127.0.0.1) and passes its address in
-- IRONPOST_E2E_DNS, which e2e.lua gives the resolver. smtp-source's
-- messages are not DKIM-signed, so DKIM gives `none`.
local kumo = require 'kumo'
require 'e2e'
local mail_auth = require 'policy-extras.mail_auth'

kumo.on('smtp_server_message_received', function(msg)
  mail_auth.check(msg)
end)
