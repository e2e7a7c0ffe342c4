"""Per-user upload limits, shared by every gateway through Redis: at most
``max_uploads_per_hour`` uploads and ``max_upload_bytes_per_hour`` bytes in a window of
``upload_window_s`` that starts at the window's first upload (``rate:upload:{user}``, a hash
``{count, bytes}`` that expires with the window).

An upload reserves its bytes before the body is read: its ``Content-Length``, or, for a body of
unknown length, as many bytes as are left (at most one upload's ``media_max_bytes``), and the
stream is cut off past the reservation. Once stored, what was not used is given back. One Lua
script checks and reserves, so concurrent uploads through several gateways cannot together pass
the limit. An upload refused before its body is read counts for nothing; one that fails after
(cut off, a broken connection) counts as one upload but not its bytes, so failing on purpose
does not buy a client more attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis
from redis.exceptions import RedisError

from chat import keys
from chat.errors import RateLimited, Unavailable
from chat.redis_pool import Script
from chat.settings import Settings

# KEYS[1]: the window. ARGV: most uploads, most bytes, bytes wanted (0: what is left, up to
# ARGV[5]), window ms, most bytes of one upload. Returns {1, bytes reserved} or {0, ms to wait}.
RESERVE_LUA = """
local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
local left = tonumber(ARGV[2]) - tonumber(redis.call('HGET', KEYS[1], 'bytes') or '0')
local want = tonumber(ARGV[3])
if want == 0 then want = math.min(left, tonumber(ARGV[5])) end
if count >= tonumber(ARGV[1]) or want <= 0 or want > left then
  return {0, math.max(redis.call('PTTL', KEYS[1]), 1)}
end
redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('HINCRBY', KEYS[1], 'bytes', want)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return {1, want}
"""

# KEYS[1]: the window. ARGV[1]: bytes to give back (only to the window they were taken from).
REFUND_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HINCRBY', KEYS[1], 'bytes', -tonumber(ARGV[1])) end
return 0
"""


@dataclass(frozen=True)
class Reservation:
    user_id: str
    reserved: int  # bytes this upload may use


class UploadLimiter:
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.settings = settings
        self._client = client
        self._reserve = Script(client, RESERVE_LUA)
        self._refund = Script(client, REFUND_LUA)

    async def reserve(self, user_id: str, content_length: int | None) -> Reservation:
        """Count one upload and reserve its bytes; ``RateLimited`` (with the ms until the window
        ends) when the user is at either limit or the upload would pass the byte limit."""
        s = self.settings
        args = [s.max_uploads_per_hour, s.max_upload_bytes_per_hour, content_length or 0,
                max(1, int(s.upload_window_s * 1000)), s.media_max_bytes]
        try:
            ok, value = await self._reserve(keys=[keys.upload_window(user_id)], args=args)
        except RedisError as exc:
            raise Unavailable("the upload limiter is unreachable") from exc
        if not ok:
            raise RateLimited(self.refusal(), retry_after_ms=int(value))
        return Reservation(user_id, int(value))

    async def over(self, reservation: Reservation) -> RateLimited:
        """The refusal of an upload whose body ran past its reservation."""
        try:
            ttl = await self._client.pttl(keys.upload_window(reservation.user_id))
        except RedisError:
            ttl = 1000
        return RateLimited(self.refusal(), retry_after_ms=max(int(ttl), 1000))

    def refusal(self) -> str:
        s = self.settings
        return (f"at most {s.max_uploads_per_hour} uploads and {s.max_upload_bytes_per_hour} bytes "
                f"per user every {s.upload_window_s:g} s")

    async def settle(self, reservation: Reservation, used: int) -> None:
        """Give back the reserved bytes the upload did not use (all of them if it failed)."""
        unused = reservation.reserved - max(0, used)
        if unused > 0:
            try:
                await self._refund(keys=[keys.upload_window(reservation.user_id)], args=[unused])
            except RedisError:  # the window keeps the bytes until it ends: errs on the safe side
                pass
