"""``chat migrate-keys``: rename Redis keys of the layout before ``chat.keys`` to the current one.

Media metadata and push registrations exist only in Redis (no event rebuilds them), so they are
renamed (``media:<id>`` to ``media:{<id>}``, ``push:devices:<user>`` to ``push:devices:{<user>}``).
The projections rebuilt from the log (conversations, receipts, presence statuses) and the live
state (watch lists) are renamed too, so nothing is lost between the upgrade and a rebuild; leases,
connections, rate buckets and push claims expire by themselves and are left to do so. A key whose
old name is ambiguous (an id outside ``A-Z a-z 0-9 _ . - ~`` where another family could have made
it) is left alone, as is one whose new name already exists (RENAMENX). Safe to run twice.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any, Callable

import redis.asyncio as redis

from chat import keys
from chat.secure import redis_options
from chat.settings import Settings

SAFE = r"([A-Za-z0-9_.~-]+)"

# (SCAN pattern, old name, Redis type it must have, new name of the captured id)
LEGACY: list[tuple[str, re.Pattern[str], str, Callable[[str], str]]] = [
    ("media:*", re.compile(f"media:{SAFE}"), "hash", keys.media),
    ("media:*", re.compile(f"media:{SAFE}:sent"), "hash", keys.media_sent),
    ("push:devices:*", re.compile(r"push:devices:([^{].*)", re.S), "hash", keys.push_devices),
    ("push:private:*", re.compile(r"push:private:([^{].*)", re.S), "string", keys.push_private),
    ("conv:*", re.compile(f"conv:{SAFE}"), "hash", keys.conversation),
    ("conv:*", re.compile(f"conv:{SAFE}:members"), "hash", keys.conversation_members),
    ("conv:*", re.compile(f"conv:{SAFE}:former"), "hash", keys.conversation_former),
    ("conv:*", re.compile(f"conv:{SAFE}:last"), "hash", keys.conversation_last),
    ("conv:*", re.compile(f"conv:{SAFE}:receipts"), "hash", keys.receipts),
    ("user:*", re.compile(r"user:([^{].*):convs", re.S), "set", keys.user_conversations),
    ("presence:*", re.compile(r"presence:live:([0-9]+)"), "zset", lambda p: keys.presence_live(int(p))),
    ("presence:*", re.compile(f"presence:(?!live:){SAFE}"), "hash", keys.presence),
]


async def migrate(client: redis.Redis) -> dict[str, int]:
    """Rename every legacy key LEGACY names; returns {"renamed": n, "kept": n}."""
    counts = {"renamed": 0, "kept": 0}
    for pattern in dict.fromkeys(p for p, *_ in LEGACY):
        async for raw in client.scan_iter(match=pattern, count=1_000):
            name = raw.decode(errors="surrogateescape")
            for _, old, kind, new in LEGACY:
                found = old.fullmatch(name)
                if found and (await client.type(raw)).decode() == kind:
                    renamed = await client.renamenx(raw, new(found.group(1)))
                    counts["renamed" if renamed else "kept"] += 1
                    break
    return counts


def add_parser(commands: Any) -> None:
    p = commands.add_parser("migrate-keys", help="rename Redis keys of the layout before chat.keys",
                            description=__doc__.split("\n\n")[1].replace("\n", " "))
    p.set_defaults(run=run)


def run(settings: Settings, args: argparse.Namespace) -> int:
    async def go() -> dict[str, int]:
        client = redis.Redis.from_url(settings.redis_url, **redis_options(settings))
        try:
            return await migrate(client)
        finally:
            await client.aclose()

    counts = asyncio.run(go())
    print(f"renamed {counts['renamed']} keys; kept {counts['kept']} whose new name exists", file=sys.stderr)
    return 0
