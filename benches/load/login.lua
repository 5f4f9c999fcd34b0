-- wrk script: POST /api/login with a JSON body, from a different client address (X-Forwarded-For, honoured because
-- the gateway trusts 127.0.0.1) and with a different account and password on every request.
-- One request in ten carries ?ok=1, which the bench upstream answers 200 (a success); the others get 401.
-- Public addresses under 16 first octets on several continents (so GeoIP lookups find a range of countries), a new
-- one per request: far under every per-address limit; every request is also a new account and password, so account
-- and password limits stay quiet too.
-- Each wrk invocation starts its counter 200000 × (seconds since the epoch) further on, so a warm-up and the run after
-- it send different accounts (new keys for every store), not the same sequence twice.
-- Every request also has its own Accept-Language (5 hex digits of the counter), so its HTTP fingerprint is its own:
-- the traffic is many distinct clients, as from many addresses, and `fingerprint_accounts` stays quiet too (one
-- client stack failing on every account is what it exists to stop, which is not what this script measures).
-- (wrk runs LuaJIT: Lua 5.1, no `//`; `bit` is built in.)
-- Every wrk thread runs its own copy of this script with the same clock: without an offset per thread, `-t4` would
-- send each account, password and address four times (four failures per account: enough for the default policy's
-- account-failure tag to impose a penalty on every account, which is not the traffic this script means to be).
-- So thread i starts 2^26 requests further on (its own addresses too: they come from the counter).
local counter = (os.time() * 200000) % 4294967296
local threads_started = 0

function setup(thread)
  thread:set("thread_index", threads_started)
  threads_started = threads_started + 1
end

function init(args)
  counter = (counter + (thread_index or 0) * 67108864) % 4294967296
end
local headers = { ["Content-Type"] = "application/json" }
local floor, format, tohex, bxor = math.floor, string.format, bit.tohex, bit.bxor
local first = { 81, 92, 1, 14, 24, 50, 177, 190, 41, 200, 36, 58, 185, 212, 66, 98 }

request = function()
  counter = counter + 1
  local n = counter % 4294967296
  local a = floor(n / 16)
  headers["Accept-Language"] = tohex(n, 5)
  headers["X-Forwarded-For"] = format("%d.%d.%d.%d", first[n % 16 + 1], floor(a / 65536) % 256, floor(a / 256) % 256, a % 256)
  local body = '{"email":"user' .. tohex(n, 8) .. '@example.com","password":"Summer' .. tohex(bxor(n, 0x5bd1e995), 8)
    .. '!","remember_me":true}'
  local path = (n % 10 == 0) and "/api/login?ok=1" or "/api/login"
  return wrk.format("POST", path, headers, body)
end
