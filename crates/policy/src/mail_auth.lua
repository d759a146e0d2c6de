-- policy-extras.mail_auth, as KumoMTA documents it: `check` runs DKIM, SPF,
-- iprev, the SMTP AUTH status, DMARC and ARC on a message, collects the
-- results and (by default) adds them as an Authentication-Results header.
-- It decides nothing: what to refuse is the policy's choice.
local mod = ...
local kumo = require 'kumo'

local OPTIONS = {
  dkim = true, spf = true, iprev = true, smtp_auth = true, dmarc = true,
  arc = true, add_auth_results_header = true, server_id = true, resolver = true,
}

local function config_of(config)
  local c = {
    dkim = true, spf = true, iprev = true, smtp_auth = true, dmarc = true,
    arc = true, add_auth_results_header = true,
  }
  for k, v in pairs(config or {}) do
    if not OPTIONS[k] then
      error(string.format("policy-extras.mail_auth: unknown option '%s'", tostring(k)), 3)
    end
    c[k] = v
  end
  return c
end

function mod.check(msg, config)
  local config = config_of(config)
  local auth_results = {}
  local dkim_auth_results = {}
  local server_id = config.server_id or msg:get_meta 'hostname' or 'localhost'

  if config.dkim then
    dkim_auth_results = msg:dkim_verify(config.resolver)
    if #dkim_auth_results == 0 then
      dkim_auth_results = {
        { method = 'dkim', result = 'none', reason = 'message was not signed' },
      }
    end
    for _, ar in ipairs(dkim_auth_results) do
      table.insert(auth_results, ar)
    end
  end

  local spf_auth_result = nil
  if config.spf then
    spf_auth_result = kumo.spf.check_msg(msg, config.resolver).result
    table.insert(auth_results, spf_auth_result)
  end

  local iprev_auth_result = nil
  if config.iprev then
    iprev_auth_result = mod.iprev_msg(msg, config.resolver)
    table.insert(auth_results, iprev_auth_result)
  end

  local smtp_auth_result = nil
  if config.smtp_auth then
    local auth_id = msg:get_meta 'authn_id'
    local sender = msg:sender()
    smtp_auth_result = {
      method = 'auth',
      result = 'none',
      props = { ['smtp.mailfrom'] = sender and tostring(sender) or '' },
    }
    if auth_id then
      smtp_auth_result.result = 'pass'
      smtp_auth_result.props['smtp.auth'] = auth_id
    end
    table.insert(auth_results, smtp_auth_result)
  end

  local dmarc_auth_result = nil
  if config.dmarc and config.dkim and config.spf then
    dmarc_auth_result = kumo.dmarc.check_msg(
      msg, dkim_auth_results, config.resolver, spf_auth_result, false
    ).result
    table.insert(auth_results, dmarc_auth_result)
  end

  local arc_auth_result = nil
  if config.arc then
    arc_auth_result = msg:arc_verify(config.resolver)
    table.insert(auth_results, arc_auth_result)
  end

  if config.add_auth_results_header then
    msg:add_authentication_results(server_id, auth_results)
  end

  return {
    dkim = dkim_auth_results,
    spf = spf_auth_result,
    iprev = iprev_auth_result,
    smtp_auth = smtp_auth_result,
    dmarc = dmarc_auth_result,
    arc = arc_auth_result,
    auth_results = auth_results,
  }
end

function mod.iprev_msg(msg, opt_resolver)
  local from = msg:get_meta 'received_from' or ''
  local ip = from:match '^%[?([^%]]+)%]?:%d+$' or from
  return mod.iprev(ip, opt_resolver)
end

return mod
