"""What a WebSocket no longer needs of its HTTP upgrade, let go once the upgrade is done.

aiohttp keeps a request's handler running for the socket's whole life, and with it objects of
the HTTP exchange that nothing reads again once the socket is upgraded: the connection's HTTP
parser, the 101 response's header dict (already written), the parsed query string. Times every
idle socket that is KiBs (bench/RESULTS.md, "Idle connections"); ``shed`` drops them.

These are aiohttp's (3.14) and yarl's private attributes. Each is dropped only when found in the
shape this module knows; another version's objects are left as they are.
"""

from __future__ import annotations

import random
from collections import deque
from functools import partial
from typing import Any

from multidict import CIMultiDict

# Shared by every upgraded socket in place of its sent 101 response's headers: nothing writes to
# a response's headers after it is prepared.
_SENT_HEADERS: CIMultiDict[str] = CIMultiDict()
# Cached parses of the query string (aiohttp's Request, yarl's URL): recomputed if read again.
_QUERY_CACHES = ("query", "_parsed_query", "query_string", "raw_query_string")
# In place of an upgraded protocol's queue of parsed HTTP requests, which it no longer fills (an
# empty deque is over half a KiB). Bounded to nothing, so even a stray append would not be kept.
_NO_REQUESTS: deque[Any] = deque(maxlen=0)
# A server's frames are unmasked, so its writer never draws mask bits: one draw for them all.
_MASK_BITS = partial(random.Random().getrandbits, 32)


def shed(request: Any, ws: Any) -> None:
    """Let go of ``request``'s HTTP-only state once ``ws`` (prepared on it) is upgraded: its
    protocol's HTTP parser and request queue (an upgraded protocol feeds the WebSocket reader
    instead and never parses HTTP again), the response headers already sent, the cached query
    parses, and the writer's own mask-bit source (unused: a server does not mask)."""
    protocol = request.protocol
    if getattr(protocol, "_upgraded", False) and getattr(protocol, "_payload_parser", None) is not None \
            and hasattr(protocol, "_parser"):
        protocol._parser = None
        if isinstance(getattr(protocol, "_messages", None), deque) and not protocol._messages:
            protocol._messages = _NO_REQUESTS
    writer = getattr(ws, "_writer", None)
    if writer is not None and getattr(writer, "use_mask", True) is False:
        writer.get_random_bits = _MASK_BITS
    if ws.prepared and isinstance(getattr(ws, "_headers", None), CIMultiDict):
        ws._headers = _SENT_HEADERS
    for cache in (getattr(request, "_cache", None), getattr(request.rel_url, "_cache", None)):
        if isinstance(cache, dict):
            for name in _QUERY_CACHES:
                cache.pop(name, None)
