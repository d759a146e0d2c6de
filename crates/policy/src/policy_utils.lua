-- policy-extras.policy_utils: the small table and string helpers KumoMTA
-- policies use, with KumoMTA's names and behaviour (Ironpost's own code).
local kumo = require 'kumo'
local M = {}

local function is_tableish(v)
  local t = type(v)
  return t == 'table' or t == 'userdata'
end

-- Deep equality; metatables are compared unless ignore_mt is true.
function M.equals(a, b, ignore_mt)
  if a == b then return true end
  if not (is_tableish(a) and is_tableish(b)) or type(a) ~= type(b) then
    return false
  end
  if not ignore_mt and getmetatable(a) ~= getmetatable(b) then
    local mt = getmetatable(a)
    if not (mt and mt.__eq) then return false end
    return a == b
  end
  local seen = {}
  for k, v in pairs(a) do
    if not M.equals(v, b[k], ignore_mt) then return false end
    seen[k] = true
  end
  for k in pairs(b) do
    if not seen[k] then return false end
  end
  return true
end

local function fail(message, detail)
  error((message and (message .. ': ') or '') .. detail, 3)
end

function M.assert_eq(a, b, message)
  if not M.equals(a, b) then
    fail(message, 'expected ' .. M.dumps(b) .. ', got ' .. M.dumps(a))
  end
end

function M.assert_ne(a, b, message)
  if M.equals(a, b) then
    fail(message, 'expected a value other than ' .. M.dumps(b))
  end
end

function M.assert_matches(s, pattern, message)
  if type(s) ~= 'string' or not s:match(pattern) then
    fail(message, M.dumps(s) .. ' does not match ' .. M.dumps(pattern))
  end
end

-- Copies every key of src into dest (shallow).
function M.merge_into(src, dest)
  for k, v in pairs(src or {}) do dest[k] = v end
end

-- Like merge_into, merging nested tables key by key.
function M.recursive_merge_into(src, dest)
  for k, v in pairs(src or {}) do
    if type(v) == 'table' and type(dest[k]) == 'table' then
      M.recursive_merge_into(v, dest[k])
    else
      dest[k] = v
    end
  end
end

function M.table_contains(tbl, value)
  if value == nil then return false end
  for _, v in pairs(tbl) do
    if v == value then return true end
  end
  return false
end

function M.table_keys(tbl)
  local keys = {}
  for k in pairs(tbl) do keys[#keys + 1] = k end
  return keys
end

function M.table_is_empty(tbl)
  return next(tbl) == nil
end

-- A table is passed through; a .toml file is read as TOML, anything else
-- as JSON (comments allowed).
function M.load_json_or_toml_file(file)
  if type(file) == 'table' then return file end
  if file:sub(-5) == '.toml' then return kumo.serde.toml_load(file) end
  return kumo.serde.json_load(file)
end

function M.starts_with(s, prefix)
  return s:sub(1, #prefix) == prefix
end

function M.ends_with(s, suffix)
  return suffix == '' or s:sub(-#suffix) == suffix
end

-- '127.0.0.1:25' -> '127.0.0.1', '25'; '[::1]:25' -> '::1', '25'.
function M.split_ip_port(ip_port)
  local ip, port = ip_port:match '^(.*):(%d+)$'
  if not ip then return nil, nil end
  return (ip:match '^%[(.*)%]$' or ip), port
end

-- A readable rendering of any value, for logs and assertion messages.
function M.dumps(value)
  local seen = {}
  local function render(v, depth)
    if type(v) == 'string' then return string.format('%q', v) end
    if type(v) ~= 'table' then return tostring(v) end
    if seen[v] then return '<cycle>' end
    seen[v] = true
    local keys = M.table_keys(v)
    table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
    local pad = string.rep('  ', depth + 1)
    local parts = {}
    for _, k in ipairs(keys) do
      local key = type(k) == 'string' and k:match '^[%a_][%w_]*$' and k
        or ('[' .. render(k, depth + 1) .. ']')
      parts[#parts + 1] = pad .. key .. ' = ' .. render(v[k], depth + 1)
    end
    seen[v] = nil
    if #parts == 0 then return '{}' end
    return '{\n' .. table.concat(parts, ',\n') .. ',\n' .. string.rep('  ', depth) .. '}'
  end
  return render(value, 0)
end

return M
