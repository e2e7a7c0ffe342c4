"""Idle connections the gateway processes hold, and their memory per connection.

    python -m bench.idle [--connections 20000] [--clients 4] [--per-user 20] [--gateways 1]

With ``--gateways N`` (more than one), N gateway processes share one port (SO_REUSEPORT) and
the memory is their RSS together.

Starts a memory ``LocalStack`` and a ``tests.support.System`` (one stream worker, one gateway);
signs users in (``POST /v1/dev/token``) and opens ``--connections`` WebSockets in
``--clients`` client processes (each its own file-descriptor budget), each waiting for
``hello``; then holds them for ``--hold`` seconds (the gateway's heartbeats run meanwhile) and
checks they are all still open. The gateway's RSS is read from /proc before the first
connection and with all of them open; memory per connection is the difference over the count.
Appends a section to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import aiohttp

from bench.run_local import append_results, machine_line, proc_sample



def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def hold(url: str, users: list[str], per_user: int, ready: "multiprocessing.Queue[int]",
               release: "multiprocessing.Event", check: "multiprocessing.Queue[int]") -> None:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = []
        sem = asyncio.Semaphore(200)

        async def connect(token: str, device: str) -> None:
            async with sem:
                ws = await session.ws_connect(f"{url.replace('http', 'ws', 1)}/v1/ws?device_id={device}&token={token}",
                                              heartbeat=None, autoping=True)
                msg = await ws.receive(timeout=60)
                assert msg.type == aiohttp.WSMsgType.TEXT and '"hello"' in msg.data, msg
                sockets.append(ws)

        tokens = []
        for user in users:
            async with session.post(f"{url}/v1/dev/token", json={"user_id": user}) as r:
                tokens.append((await r.json())["token"])
        await asyncio.gather(*(connect(t, f"d{i}") for t in tokens for i in range(per_user)))
        ready.put(len(sockets))
        while not release.is_set():
            await asyncio.sleep(0.5)
        check.put(sum(1 for ws in sockets if not ws.closed))
        for ws in sockets:
            await ws.close()


def client_main(url: str, users: list[str], per_user: int, ready, release, check) -> None:
    raise_fd_limit()
    asyncio.run(hold(url, users, per_user, ready, release, check))


def rss(gateways: list) -> float:
    """The gateway processes' RSS together, MiB."""
    return sum(proc_sample(g.pid)["rss_mib"] for g in gateways)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--per-user", type=int, default=20, help="devices per user")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold them all open")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes on one port (SO_REUSEPORT)")
    args = parser.parse_args(argv)
    hard = raise_fd_limit()
    from infra.stack import LocalStack
    from tests.support import System

    users = [f"idle-{i}" for i in range(args.connections // args.per_user)]
    with tempfile.TemporaryDirectory() as tmp, LocalStack(tmp, topics={}) as stack:
        system = System(stack, Path(tmp), CHAT_MAX_CONNECTIONS_PER_USER=str(args.per_user),
                        CHAT_LOG_LEVEL="WARNING")
        try:
            system.start_worker()
            first = system.start_gateway(**({"CHAT_REUSE_PORT": "true"} if args.gateways > 1 else {}))
            gateways = [first] + [system.start_gateway(port=first.port_number)  # type: ignore[attr-defined]
                                  for _ in range(args.gateways - 1)]
            time.sleep(2)
            before = rss(gateways)
            ready, check, release = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Event()
            started = time.monotonic()
            procs = [multiprocessing.Process(target=client_main, args=(
                system.url(), users[i::args.clients], args.per_user, ready, release, check))
                for i in range(args.clients)]
            for p in procs:
                p.start()
            opened = sum(ready.get(timeout=600) for _ in procs)
            connect_s = time.monotonic() - started
            time.sleep(args.hold)
            after = rss(gateways)
            release.set()
            still_open = sum(check.get(timeout=120) for _ in procs)
            for p in procs:
                p.join(60)
        finally:
            system.stop()
    per_conn_kib = (after - before) * 1024 / max(opened, 1)
    where = "one gateway process" if args.gateways == 1 else f"{args.gateways} gateway processes on one port"
    lines = [f"\n## Idle connections on {where}, {date.today().isoformat()}\n",
             f"{machine_line()} fd limit {hard}.",
             f"Command: `.venv/bin/python -m bench.idle --connections {args.connections} --clients {args.clients} "
             f"--per-user {args.per_user} --hold {args.hold:g} --gateways {args.gateways}`\n",
             f"- opened {opened} WebSockets in {connect_s:.1f} s ({opened / connect_s:.0f}/s), "
             f"{still_open} still open after {args.hold:g} s idle",
             f"- gateway RSS {before:.1f} MiB before, {after:.1f} MiB with them open: "
             f"{per_conn_kib:.1f} KiB per connection"]
    print("\n".join(lines))
    append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
