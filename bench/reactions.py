"""A reaction storm: many reactions per second on one message, and how fast every member sees each.

    python -m bench.reactions [--rate 1000] [--seconds 10] [--members 10]

Starts a ``LocalStack`` (Apache Kafka, Redis), one stream worker and one gateway on this machine,
with the load generator. ``--members`` users share one group, each with one connected device;
one message is sent, then every member toggles a reaction of their own on it (on, off, on, ...),
the members together making ``--rate`` changes per second for ``--seconds`` seconds (the per-user
rate limit is raised for the run; it is 50/s by default). Each change is timed from its ``react``
frame to the ``message_updated`` frame carrying its ``change_seq`` at every member device (the
reacting device included): p50 / p99 / max, and lost or out-of-order frames. Appends a section to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.run_local import append_results, machine_line
from infra.stack import LocalStack
from tests.client import sign_in_users
from tests.support import System


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


async def storm(url: str, members: int, rate: float, seconds: float) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        users = await sign_in_users(session, url, *[f"r{i}" for i in range(members)])
        status, group = await users[0].call("POST", "/v1/conversations", json={
            "type": "group", "name": "storm", "members": [u.user_id for u in users[1:]]})
        assert status == 201, group
        cid = group["conversation_id"]
        status, ack = await users[0].call("POST", f"/v1/conversations/{cid}/messages",
                                          json={"client_msg_id": "m1", "body": "react to me"})
        assert status == 202, ack
        sent_at: dict[str, float] = {}  # change id -> when its react frame went out
        change_of: dict[int, str] = {}  # change_seq -> change id
        seen: list[dict[int, float]] = [{} for _ in users]  # per device: change_seq -> arrival
        order_errors = 0
        answered = asyncio.Event()
        total = int(rate * seconds)

        async def read(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal order_errors
            last = 0
            async for msg in ws:
                frame = orjson.loads(msg.data)
                kind = frame.get("type")
                if kind == "message_updated":
                    now = time.perf_counter()
                    if frame["change_seq"] <= last:
                        order_errors += 1
                    last = frame["change_seq"]
                    seen[i][frame["change_seq"]] = now
                elif kind == "changed" and frame.get("change_seq") is not None:
                    change_of[frame["change_seq"]] = frame["id"]
                    if len(change_of) == total:
                        answered.set()
                elif kind == "error":
                    raise AssertionError(f"error frame: {frame}")

        sockets = []
        for u in users:
            ws = await session.ws_connect(f"{url.replace('http', 'ws', 1)}/v1/ws?device_id=d1", headers=u.headers)
            sockets.append(ws)
        readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
        await asyncio.sleep(1.5)  # past each socket's sync grace
        start = time.perf_counter()
        for n in range(total):
            due = start + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            member = n % members
            change_id = f"c{n}"
            on = (n // members) % 2 == 0  # each member toggles their reaction: on, off, on, ...
            sent_at[change_id] = time.perf_counter()
            await sockets[member].send_str(orjson.dumps({
                "type": "react", "id": change_id, "conversation_id": cid, "seq": 1, "emoji": f"e{member}",
                "on": on}).decode())
        offered_s = time.perf_counter() - start
        try:
            await asyncio.wait_for(answered.wait(), 60)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(2)  # the last frames in flight
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
        latencies, lost = [], 0
        for per_device in seen:
            for change_seq, change_id in change_of.items():
                arrived = per_device.get(change_seq)
                if arrived is None:
                    lost += 1
                else:
                    latencies.append((arrived - sent_at[change_id]) * 1000)
        return {"changes": len(change_of), "offered": total, "offered_rate": total / offered_s,
                "deliveries": len(latencies), "expected": len(change_of) * members, "lost": lost,
                "out_of_order": order_errors, "p50": statistics.median(latencies) if latencies else float("nan"),
                "p99": percentile(latencies, 99), "max": max(latencies) if latencies else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--members", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, LocalStack(tmp, topics={}) as stack:
        system = System(stack, Path(tmp), CHAT_RATE_PER_S=str(args.rate), CHAT_RATE_BURST=str(int(args.rate)))
        try:
            system.start_worker()
            system.start_gateway()
            r = asyncio.run(storm(system.url(), args.members, args.rate, args.seconds))
        finally:
            system.stop()
    code = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"\n## Reaction storm, {date.today().isoformat()}\n",
             machine_line(),
             f"Command: `.venv/bin/python -m bench.reactions --rate {args.rate:g} --seconds {args.seconds:g} "
             f"--members {args.members}` at {code} (Apache Kafka, Redis, SQLite timeline, 1 worker, 1 gateway, "
             "the load generator, all on this machine).\n",
             "| reactions/s offered (achieved) | changes acked | message_updated delivered / expected | lost | "
             "out of order | p50 / p99 / max (ms) |",
             "|---|---|---|---|---|---|",
             f"| {args.rate:g} ({r['offered_rate']:.0f}) | {r['changes']} / {r['offered']} | {r['deliveries']} / "
             f"{r['expected']} | {r['lost']} | {r['out_of_order']} | {r['p50']:.1f} / {r['p99']:.1f} / "
             f"{r['max']:.1f} |"]
    append_results(lines)
    print("\n".join(lines))
    return 0 if r["lost"] == 0 and r["out_of_order"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
