"""The shared rate limiter in Redis: the same GCRA buckets as PostgresLimiter, one Lua script each.

Optional (SWITCHBOARD_LIMITER_BACKEND=redis, SWITCHBOARD_LIMITER_REDIS_URL; the `redis` extra).
PostgreSQL stays the default and the record: learned limits and their limit events are written
there as with the PostgreSQL backend. What moves to Redis is the hot part, every reservation's
read-modify-write of the bucket state, because Redis runs a script to completion before the next
one and keeps no row locks or commit flushes: one hot bucket set takes tens of thousands of
reservations per second where PostgreSQL serialises on the row lock (bench/limiter.py).

The guarantees are the PostgreSQL backend's: a script reads every bucket of every candidate, picks
the candidate whose slot comes first and advances its buckets only if the slot is within the wait
(all or nothing, atomic across the fleet), using Redis's clock, which every process shares. The
state of a bucket is a hash `<prefix><bucket>` {tat, paused_until, learned}. Redis's durability is
its own configuration: a Redis restart without persistence forgets every bucket's state, so the
fleet may spend one burst at each level again at once (the limit over any 60 s window holds from
then on), and a learned limit is learned again from the next call's headers.
The default prefix carries a hash tag, so on a Redis Cluster every bucket lives on one shard (a
multi-key script needs that).
"""

from __future__ import annotations

from collections.abc import Sequence

from redis import Redis  # the optional `redis` extra; only imported when this backend is chosen
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from app.inference.limiter import Candidate, Held, Limiter, Reservation, WaitTooLong
from app.state import LimitEvent, RateBucket, session_scope

DEFAULT_PREFIX = "switchboard:{limiter}:"
# A bucket nobody touched for a day holds nothing a reservation needs (its TAT is long past; a
# learned limit is learned again from the next call's headers), so Redis forgets it.
_IDLE = "local IDLE = 86400\n"

# The arithmetic of `_plan` and `Demand.effective` (app/inference/limiter.py). ARGV: max_wait, then
# per demand (KEYS[i]) seven values: candidate, units, limit, per_min, burst, headroom, tokens;
# "" is NULL. Numbers go back as strings: Redis would truncate a Lua number to an integer.
_RESERVE = (
    _IDLE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local max_wait = tonumber(ARGV[1])
local n = #KEYS
local cands, best, best_start = {}, nil, nil
local rows = {}
for i = 1, n do
  local a = 1 + (i - 1) * 7
  local cand = tonumber(ARGV[a + 1])
  local units = tonumber(ARGV[a + 2])
  local lim, per_min, burst, headroom = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]),
                                        tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local s = redis.call('HMGET', KEYS[i], 'tat', 'paused_until', 'learned')
  local tat, paused, learned = tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3])
  local in_force, step, allow = lim, nil, burst
  if per_min then step = 60 / per_min end
  if learned and learned > 0 and (lim == nil or learned < lim) then
    in_force, step, allow = learned, 60 / (learned * (1 - headroom)), math.max(1, learned * headroom / 2)
  end
  local conforms = now
  if step then
    if units > allow then conforms = math.max(now, tat)
    else conforms = math.max(now, tat + (units - allow) * step) end
  end
  rows[i] = {cand = cand, units = units, tat = tat, in_force = in_force, learned = learned, step = step}
  local start = math.max(cands[cand] or now, conforms, paused)
  cands[cand] = start
end
for cand, start in pairs(cands) do
  if best == nil or start < best_start or (start == best_start and cand < best) then
    best, best_start = cand, start
  end
end
local moved = best_start - now <= max_wait
local out = {tostring(best), string.format('%.17g', best_start), string.format('%.17g', now)}
for i = 1, n do
  local r = rows[i]
  if r.cand == best then
    if moved and r.step then
      local tat = math.max(r.tat, best_start) + r.units * r.step
      redis.call('HSET', KEYS[i], 'tat', string.format('%.17g', tat))
      redis.call('EXPIRE', KEYS[i], IDLE)
    end
    table.insert(out, r.in_force and string.format('%.17g', r.in_force) or '')
    table.insert(out, r.learned and string.format('%.17g', r.learned) or '')
    table.insert(out, r.step and string.format('%.17g', r.step) or '')
  end
end
return out
"""
)

# Giving back unused tokens never moves a bucket into the past. ARGV: one delta per KEYS[i].
_RECONCILE = (
    _IDLE
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for i = 1, #KEYS do
  local tat = tonumber(redis.call('HGET', KEYS[i], 'tat')) or 0
  local moved = math.max(tat + tonumber(ARGV[i]), math.min(tat, now))
  redis.call('HSET', KEYS[i], 'tat', string.format('%.17g', moved))
  redis.call('EXPIRE', KEYS[i], IDLE)
end
return #KEYS
"""
)

_PAUSE = (
    _IDLE
    + """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[1])
local paused = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
if until_ > paused then redis.call('HSET', KEYS[1], 'paused_until', string.format('%.17g', until_)) end
redis.call('EXPIRE', KEYS[1], IDLE)
return 1
"""
)

# The previous learned limit, or "same" when it is already this one (another process learned it).
_LEARN = (
    _IDLE
    + """
local previous = redis.call('HGET', KEYS[1], 'learned')
if previous and tonumber(previous) == tonumber(ARGV[1]) then return 'same' end
redis.call('HSET', KEYS[1], 'learned', ARGV[1])
redis.call('EXPIRE', KEYS[1], IDLE)
return previous or ''
"""
)


def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _opt(value: bytes | str) -> float | None:
    text = value.decode() if isinstance(value, bytes) else value
    return float(text) if text else None


class RedisLimiter(Limiter):
    """Shared by every process that reaches the same Redis; see the module docstring."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = Redis.from_url(url)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._reconcile = self._redis.register_script(_RECONCILE)
        self._pause = self._redis.register_script(_PAUSE)
        self._learn = self._redis.register_script(_LEARN)

    def _key(self, bucket: str) -> str:
        return self._prefix + bucket

    def reserve(self, candidates: Sequence[Candidate], max_wait_s: float) -> Reservation:
        keys: list[str] = []
        args: list[str] = [repr(float(max_wait_s))]
        for index, candidate in enumerate(candidates):
            for d in candidate.demands:
                keys.append(self._key(d.bucket))
                rate = d.rate
                args += [
                    str(index),
                    _num(d.units),
                    _num(d.limit),
                    _num(rate.per_minute if rate else None),
                    _num(rate.burst if rate else None),
                    _num(d.headroom),
                    "1" if d.tokens else "0",
                ]
        assert keys, "no candidate to reserve for"
        out = self._reserve(keys=keys, args=args)
        cand, start, now = int(out[0]), float(out[1]), float(out[2])
        wait = start - now
        if wait > max_wait_s:
            raise WaitTooLong(wait)  # the script moved nothing
        chosen = candidates[cand]
        held = tuple(
            Held(
                d.bucket, d.units, d.tokens, _opt(out[3 + 3 * i]), _opt(out[4 + 3 * i]), _opt(out[5 + 3 * i])
            )
            for i, d in enumerate(chosen.demands)
        )
        return Reservation(chosen.key_id, start, wait, held)

    def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        moves = [
            (self._key(h.bucket), (actual_tokens - h.units) * h.interval)
            for h in reservation.held
            if h.tokens and h.interval is not None and actual_tokens != h.units
        ]
        if moves:
            self._reconcile(keys=[k for k, _ in moves], args=[repr(d) for _, d in moves])

    def pause(self, bucket: str, seconds: float) -> None:
        self._pause(keys=[self._key(bucket)], args=[repr(float(seconds))])

    def learn(self, bucket: str, limit: float, configured: float | None, source: str) -> None:
        previous = self._learn(keys=[self._key(bucket)], args=[repr(float(limit))])
        if previous in (b"same", "same"):
            return  # another process learned it first
        with session_scope() as session:
            recorded = session.scalar(select(RateBucket.learned_limit).where(RateBucket.bucket == bucket))
            session.execute(
                insert(RateBucket)
                .values(bucket=bucket, tat=0.0, learned_limit=limit, learned_at=func.now())
                .on_conflict_do_update(
                    index_elements=[RateBucket.bucket],
                    set_={"learned_limit": limit, "learned_at": func.now()},
                )
            )
            session.add(
                LimitEvent(
                    bucket=bucket,
                    previous_limit=_opt(previous) if previous else recorded,
                    learned_limit=limit,
                    configured_limit=configured,
                    source=source,
                )
            )
