"""Upload throughput of ``POST /v1/media`` for a 20 MiB file, filesystem and S3 backends.

    python -m bench.media [--runs 5] [--mib 20]

Starts a memory ``LocalStack``, an s3rver (npm, filesystem-backed S3), one stream worker and
two gateways (``CHAT_MEDIA_BACKEND=fs`` and ``s3``), all on this machine with the client.
Uploads the same random file ``--runs`` times to each, from memory, and times each request at
the client (first byte sent to the 201). Also reads the gateways' peak RSS (VmHWM) before and
after, to show the upload is streamed, not held. Appends a section to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import aiohttp

from bench.run_local import append_results, machine_line
from infra.services import S3_CREDENTIALS, S3rver, Service, free_port
from infra.stack import LocalStack
from tests.client import sign_in_users
from tests.support import System

MiB = 1024 * 1024


def peak_rss_mib(service: Service) -> float:
    for line in Path(f"/proc/{service.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def uploads(url: str, data: bytes, runs: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        (user,) = await sign_in_users(session, url, "bench")
        seconds = []
        for _ in range(runs):
            start = time.perf_counter()
            async with session.post(f"{url}/v1/media", data=data,
                                    headers={**user.headers, "Content-Type": "video/mp4"}) as r:
                assert r.status == 201, await r.text()
                assert (await r.json())["size"] == len(data)
            seconds.append(time.perf_counter() - start)
        return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mib", type=int, default=20)
    args = parser.parse_args(argv)
    data = os.urandom(args.mib * MiB)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, LocalStack(tmp, topics={}) as stack, \
            S3rver(free_port(), Path(tmp) / "s3", log_path=Path(tmp) / "s3rver.log") as s3:
        system = System(stack, Path(tmp), CHAT_MEDIA_MAX_BYTES=str(args.mib * MiB))
        try:
            system.start_worker()
            gateways = {"fs": system.start_gateway(), "s3": system.start_gateway(
                CHAT_MEDIA_BACKEND="s3", CHAT_MEDIA_S3_ENDPOINT=s3.endpoint, CHAT_MEDIA_S3_ACCESS_KEY=S3_CREDENTIALS,
                CHAT_MEDIA_S3_SECRET_KEY=S3_CREDENTIALS)}
            for backend, gateway in gateways.items():
                before = peak_rss_mib(gateway)
                seconds = asyncio.run(uploads(system.url(gateway), data, args.runs))
                rates = [args.mib / s for s in seconds]
                rows.append((backend, statistics.median(rates), max(rates), min(rates), before, peak_rss_mib(gateway)))
        finally:
            system.stop()
    lines = [f"\n## Media upload throughput, {date.today().isoformat()}\n",
             machine_line(),
             f"Command: `.venv/bin/python -m bench.media --runs {args.runs} --mib {args.mib}` (one {args.mib} MiB "
             "file from memory, one request at a time; client, gateway, worker, broker, Redis and s3rver "
             "on the same machine).\n",
             "| backend | median MiB/s | best | worst | gateway peak RSS before → after (MiB) |",
             "|---|---|---|---|---|"]
    for backend, median, best, worst, before, after in rows:
        lines.append(f"| {backend} | {median:.1f} | {best:.1f} | {worst:.1f} | {before:.0f} → {after:.0f} |")
    print("\n".join(lines))
    append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
