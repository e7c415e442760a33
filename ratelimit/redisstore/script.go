package redisstore

import "github.com/redis/go-redis/v9"

// decideScript decides every key it is given in one call. ARGV[1] is now
// (µs, one instant for the whole call); per key i, ARGV[(i-1)*5+2 ..] =
// algorithm (f|s|t), addend, requests, window (ms), capacity. It returns three integers per key: used, over
// (0|1), reset (ms for f and s, µs for t). The arithmetic is step for step
// that of package ratelimit's stepFixed, stepSliding and stepToken.
//
// Fixed windows use envoyproxy/ratelimit's keys and counters (INCRBY; the
// TTL is the window's length, set when the hit creates the key), so both
// services can share one Redis.
var decideScript = redis.NewScript(`
local out = {}
local nowUs = tonumber(ARGV[1])
local now = math.floor(nowUs / 1000)
for i = 1, #KEYS do
  local a = (i - 1) * 5 + 1
  local alg = ARGV[a + 1]
  local addend = tonumber(ARGV[a + 2])
  local limit = tonumber(ARGV[a + 3])
  local win = tonumber(ARGV[a + 4])
  local cap = tonumber(ARGV[a + 5])
  local key = KEYS[i]
  local used, over, reset
  if alg == 'f' then
    if addend > 0 then
      used = redis.call('INCRBY', key, addend)
      if used == addend then
        redis.call('EXPIRE', key, math.floor(win / 1000))
      end
    else
      used = tonumber(redis.call('GET', key)) or 0
    end
    if used > limit then over = 1 else over = 0 end
    reset = win - now % win
  elseif alg == 's' then
    local st = redis.call('HMGET', key, 's', 'c', 'p')
    local start = tonumber(st[1]) or 0
    local cur = tonumber(st[2]) or 0
    local prev = tonumber(st[3]) or 0
    local ws = now - now % win
    if ws ~= start then
      if ws - start == win then prev = cur else prev = 0 end
      cur = 0
      start = ws
    end
    local elapsed = now - ws
    local weighted = math.floor(prev * (win - elapsed) / win)
    used = cur + weighted + addend
    if used > limit then
      over = 1
    else
      over = 0
      cur = cur + addend
    end
    if addend > 0 then
      redis.call('HSET', key, 's', string.format('%d', start), 'c', string.format('%d', cur), 'p', string.format('%d', prev))
      redis.call('PEXPIRE', key, start + 2 * win - now)
    end
    reset = win - elapsed
  else
    local tat = tonumber(redis.call('GET', key)) or 0
    local interval = (win * 1000) / limit
    local t = tat
    if t < nowUs then t = nowUs end
    local nxt = t + addend * interval
    local allowAt = nxt - cap * interval
    local after
    if nowUs < allowAt then
      over = 1
      after = t
    else
      over = 0
      after = nxt
    end
    used = math.ceil((after - nowUs) / interval - 1e-9)
    if over == 1 then
      used = used + addend
      reset = math.floor(allowAt - nowUs)
    else
      reset = math.floor(after - nowUs)
      if addend > 0 then
        redis.call('SET', key, string.format('%.17g', nxt), 'PX', math.floor((nxt - nowUs) / 1000) + 1)
      end
    end
  end
  out[#out + 1] = used
  out[#out + 1] = over
  out[#out + 1] = reset
end
return out
`)
