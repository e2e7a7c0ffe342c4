"""Idle connections the gateway processes hold, and their memory per connection.

    python -m bench.idle [--connections 20000] [--clients 4] [--per-user 20] [--gateways 1]

With ``--gateways N`` (more than one), N gateway processes share one port (SO_REUSEPORT) and
the memory is their RSS together.

Starts a memory ``LocalStack`` and a ``tests.support.System`` (one stream worker, the
gateways); signs users in (``POST /v1/dev/token``) and opens ``--connections`` WebSockets in
``--clients`` client processes (each its own file-descriptor budget), each waiting for
``hello``; then holds them for ``--hold`` seconds (the gateway's heartbeats run meanwhile; each
client socket keeps reading, so it answers the pings) and checks they are all still open, and
counts the sockets each gateway process holds. The gateways' RSS is read from /proc before the first
connection and with all of them open; memory per connection is the difference over the count.
Appends a section to ``bench/RESULTS.md``.

Loopback has about 28,000 ephemeral ports (``ip_local_port_range``) per source address toward
one port, and each process at most ``RLIMIT_NOFILE`` sockets: so each client process binds its
sockets to a source address of its own (127.0.0.2, 127.0.0.3, ...), and there are at least as
many client processes as ``PER_CLIENT`` fits. A connect the gateway refuses (503 while its Redis
pool is busy under the burst) is retried after a pause, as a client would; the failures left
after ``RETRIES`` are counted.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import aiohttp

from bench.run_local import append_results, code_version, machine_line, proc_sample

PER_CLIENT = 18_000  # sockets one client process opens at most (under its fd limit)
RETRIES = 5


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read (and drop) what the gateway sends, answering its pings, until the socket closes."""
    async for _ in ws:
        pass


async def hold(url: str, users: list[str], per_user: int, ready: "multiprocessing.Queue[tuple[int, int]]",
               release: "multiprocessing.Event", check: "multiprocessing.Queue[int]",
               source: str = "127.0.0.1", concurrency: int = 200) -> None:
    """Open ``per_user`` sockets for each of ``users`` from ``source``, report (opened, failed)
    on ``ready``, hold them until ``release``, then report how many are still open."""
    connector = aiohttp.TCPConnector(limit=0, local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets = []
        readers = []  # one per socket: a client answers the gateway's pings only while it reads
        failed = 0
        sem = asyncio.Semaphore(concurrency)
        ws_url = url.replace("http", "ws", 1)

        async def connect(token: str, device: str) -> None:
            nonlocal failed
            for attempt in range(RETRIES + 1):
                try:
                    async with sem:
                        ws = await session.ws_connect(f"{ws_url}/v1/ws?device_id={device}&token={token}",
                                                      heartbeat=None, autoping=True)
                        msg = await ws.receive(timeout=60)
                    assert msg.type == aiohttp.WSMsgType.TEXT and '"hello"' in msg.data, msg
                    sockets.append(ws)
                    readers.append(asyncio.create_task(read(ws)))
                    return
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                    await asyncio.sleep(0.5 * (attempt + 1))
            failed += 1

        tokens = []
        for user in users:
            async with session.post(f"{url}/v1/dev/token", json={"user_id": user}) as r:
                tokens.append((await r.json())["token"])
        await asyncio.gather(*(connect(t, f"d{i}") for t in tokens for i in range(per_user)))
        ready.put((len(sockets), failed))
        while not release.is_set():
            await asyncio.sleep(0.5)
        check.put(sum(1 for ws in sockets if not ws.closed))
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()


def client_main(url: str, users: list[str], per_user: int, ready, release, check,
                source: str = "127.0.0.1", concurrency: int = 200) -> None:
    raise_fd_limit()
    asyncio.run(hold(url, users, per_user, ready, release, check, source, concurrency))


def rss(gateways: list) -> float:
    """The gateway processes' RSS together, MiB."""
    return sum(proc_sample(g.pid)["rss_mib"] for g in gateways)


def sockets_held(pid: int) -> int:
    """Open sockets of a process (its accepted connections, plus a few of its own)."""
    fd_dir = f"/proc/{pid}/fd"
    return sum(1 for fd in os.listdir(fd_dir) if os.readlink(f"{fd_dir}/{fd}").startswith("socket:"))


def run(args: argparse.Namespace, users: list[str], clients: int) -> dict:
    """Start the system, open and hold the sockets; the figures."""
    from infra.stack import LocalStack
    from tests.support import System

    with tempfile.TemporaryDirectory() as tmp, LocalStack(tmp, topics={}) as stack:
        system = System(stack, Path(tmp), CHAT_MAX_CONNECTIONS_PER_USER=str(args.per_user),
                        CHAT_LOG_LEVEL="WARNING")
        try:
            system.start_worker()
            first = system.start_gateway(**({"CHAT_REUSE_PORT": "true"} if args.gateways > 1 else {}))
            gateways = [first] + [system.start_gateway(port=first.port_number)  # type: ignore[attr-defined]
                                  for _ in range(args.gateways - 1)]
            time.sleep(5)
            before = rss(gateways)
            ready, check, release = multiprocessing.Queue(), multiprocessing.Queue(), multiprocessing.Event()
            started = time.monotonic()
            procs = [multiprocessing.Process(target=client_main, args=(
                system.url(), users[i::clients], args.per_user, ready, release, check,
                f"127.0.0.{2 + i}", max(1, args.concurrency // clients))) for i in range(clients)]
            for p in procs:
                p.start()
            counts = [ready.get(timeout=900) for _ in procs]
            connect_s = time.monotonic() - started
            time.sleep(args.hold)
            after = rss(gateways)
            per_gateway = [sockets_held(g.pid) for g in gateways]
            release.set()
            still_open = sum(check.get(timeout=120) for _ in procs)
            for p in procs:
                p.join(60)
        finally:
            system.stop()
    return {"opened": sum(c[0] for c in counts), "failed": sum(c[1] for c in counts), "connect_s": connect_s,
            "before": before, "after": after, "per_gateway": per_gateway, "still_open": still_open}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=4, help=f"client processes (at least one per {PER_CLIENT})")
    parser.add_argument("--per-user", type=int, default=20, help="devices per user")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds to hold them all open")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes on one port (SO_REUSEPORT)")
    parser.add_argument("--concurrency", type=int, default=400, help="connects in flight, all clients together")
    args = parser.parse_args(argv)
    hard = raise_fd_limit()
    clients = max(args.clients, math.ceil(args.connections / PER_CLIENT))
    users = [f"idle-{i}" for i in range(args.connections // args.per_user)]
    r = run(args, users, clients)
    opened = r["opened"]
    per_conn_kib = (r["after"] - r["before"]) * 1024 / max(opened, 1)
    where = "one gateway process" if args.gateways == 1 else f"{args.gateways} gateway processes on one port"
    lines = [f"\n## Idle connections on {where}, {date.today().isoformat()}\n",
             f"{machine_line()} fd limit {hard}. Code: {code_version()}.",
             f"Command: `.venv/bin/python -m bench.idle --connections {args.connections} --clients {args.clients} "
             f"--per-user {args.per_user} --hold {args.hold:g} --gateways {args.gateways}`"
             f" ({clients} client processes, source addresses 127.0.0.2-{1 + clients})\n",
             f"- opened {opened} WebSockets in {r['connect_s']:.1f} s ({opened / r['connect_s']:.0f}/s), "
             f"{r['failed']} failed after {RETRIES} retries, {r['still_open']} still open after {args.hold:g} s idle",
             f"- sockets held per gateway process (its own few included): {', '.join(map(str, r['per_gateway']))}",
             f"- gateway RSS {r['before']:.1f} MiB before, {r['after']:.1f} MiB with them open: "
             f"{per_conn_kib:.1f} KiB per connection"]
    print("\n".join(lines))
    append_results(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
