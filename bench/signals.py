"""Latency of the real-time signals: typing, receipts and presence, over real WebSockets.

    python -m bench.signals [--samples 200]

Starts a memory ``LocalStack`` and a ``tests.support.System`` (one stream worker, two
gateways); the sender's devices are on one gateway and the receiver's on the other, so every
frame crosses gateways. Per sample it measures, at the client, from sending a frame to the
other user's device receiving the resulting frame:

- typing: ``typing`` frame -> ``typing`` frame (Redis pub/sub);
- receipt: ``receipt`` (read) frame -> ``receipt`` frame (commands topic, sequencer, events
  topic, projector, delivery topic);
- presence: WebSocket connect -> the contact's ``presence`` online frame (signals topic,
  presence worker, presence topic, projector, delivery topic).

Appends a section to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import aiohttp

from bench.run_local import append_results, machine_line
from infra.stack import LocalStack
from tests.client import Client, sign_in_users, timed_device
from tests.support import System



def summary(samples_ms: list[float]) -> str:
    q = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return f"n={len(samples_ms)} p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(samples_ms):.1f} ms"


async def answer_time(device, kind: str, pred, sent: float, timeout: float = 10.0) -> float:
    """ms from ``sent`` to the arrival of the first matching frame after the current ones."""
    start, deadline = len(device.frames), time.monotonic() + timeout
    while True:
        for i in range(start, len(device.frames)):
            if device.frames[i].get("type") == kind and pred(device.frames[i]):
                return (device.arrived_at[i] - sent) * 1000
        start = len(device.frames)
        device._arrived.clear()
        await asyncio.wait_for(device._arrived.wait(), max(0.001, deadline - time.monotonic()))


async def measure(gw1: str, gw2: str, samples: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"typing": [], "receipt": [], "presence": []}
    async with aiohttp.ClientSession() as session:
        alice, bob = await sign_in_users(session, gw1, "alice", "bob")
        cid = (await alice.create_group("bench", [bob.user_id]))["conversation_id"]
        a_dev, b_dev = await timed_device(alice, "a"), await timed_device(bob, "b", gw2)
        for i in range(samples):
            sent = time.monotonic()
            await a_dev.send({"type": "typing", "conversation_id": cid, "typing": i % 2 == 0})
            results["typing"].append(await answer_time(b_dev, "typing", lambda f: f["typing"] == (i % 2 == 0), sent))
            await asyncio.sleep(0.01)
        for i in range(samples):
            await a_dev.send_message(cid, f"m{i}", "hello")
        await b_dev.wait_for("message", count=samples, timeout=60)
        for seq in range(1, samples + 1):
            sent = time.monotonic()
            await b_dev.send({"type": "receipt", "conversation_id": cid, "seq": seq, "status": "read"})
            results["receipt"].append(await answer_time(a_dev, "receipt", lambda f: f["seq"] == seq, sent))
        contacts = [await Client.sign_in(session, gw1, f"{bob.user_id}-c{i}") for i in range(min(samples, 50))]
        for contact in contacts:
            await contact.create_group("p", [bob.user_id])
            sent = time.monotonic()
            device = await timed_device(contact, "c", gw1)
            results["presence"].append(await answer_time(
                b_dev, "presence", lambda f: f["user_id"] == contact.user_id and f["status"] == "online", sent))
            await device.close()
        await a_dev.close()
        await b_dev.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, LocalStack(tmp, topics={}) as stack:
        system = System(stack, Path(tmp), CHAT_TYPING_RATE_BURST="100000", CHAT_RATE_BURST="100000")
        try:
            system.start_worker()
            gw1, gw2 = system.start_gateway(), system.start_gateway()
            results = asyncio.run(measure(system.url(gw1), system.url(gw2), args.samples))
        finally:
            system.stop()
    lines = [f"\n## Signal latency, {date.today().isoformat()}\n",
             machine_line(),
             f"Command: `.venv/bin/python -m bench.signals --samples {args.samples}` (one worker, two gateways, "
             "sender and receiver on different gateways; one frame at a time, client-side clock).\n"]
    for kind, samples in results.items():
        lines.append(f"- {kind}: {summary(samples)}")
        print(f"{kind}: {summary(samples)}")
    append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
