"""`make run` as a new user meets it: the whole system from ``python -m infra.run`` (what `make
run` runs) on an empty data directory, then a burst from three users at once into one group,
then the same on a restarted `make run` that keeps its data.

Every send must be acked with no error, and the fourth member must receive every seq in order,
with nothing missing: on the Tansu stand-in this burst was refused 118 times in 120.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from infra.services import free_port
from tests.client import Client, first_seen, full_history, sign_in_users

ROOT = Path(__file__).resolve().parents[2]
SENDERS, EACH = 3, 40


class MakeRun:
    """``python -m infra.run`` in its own process group, on given ports and data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.args = ["--broker-port", str(free_port()), "--controller-port", str(free_port()),
                     "--redis-port", str(free_port())]
        self.env = {**os.environ, "CHAT_PORT": str(self.port), "CHAT_DATA_DIR": str(data_dir),
                    "CHAT_WORKER_METRICS_PORT": str(free_port())}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180.0) -> float:
        """Start and wait for the "running" line; returns the seconds it took."""
        started = time.monotonic()
        self.output = []
        self.proc = subprocess.Popen([sys.executable, "-m", "infra.run", *self.args], cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        assert self.proc.stdout is not None
        while time.monotonic() - started < timeout:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if line.startswith("Chat is running at"):
                return time.monotonic() - started
        self.stop()
        raise AssertionError("make run did not get healthy:\n" + "".join(self.output[-40:]))

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def make_run(tmp_path):
    run = MakeRun(tmp_path / "data")
    yield run
    run.stop()


async def burst(senders: list[Client], reader: Client, cid: str, first_seq: int) -> None:
    """Every sender sends EACH messages at once on its own socket; all acked, no error frame, and
    the reader's device gets the seqs first_seq.. in order, each once after dedup."""
    devices = [await c.device("burst") for c in senders]
    watcher = await reader.device("watch")
    for device in devices:
        await device.wait_for("hello")
    await watcher.wait_for("hello")
    await asyncio.gather(*(d.send_message(cid, f"{d.user_id}-{first_seq}-{i}", f"{d.user_id} says {i}")
                           for d in devices for i in range(EACH)))
    total = SENDERS * EACH
    for device in devices:
        await device.wait_for("ack", count=EACH, timeout=60)
        assert device.of_type("error") == []
    last = first_seq + total - 1
    await watcher.wait_for("message", lambda f: f["message"]["seq"] == last, timeout=60)
    seqs = [m["seq"] for m in first_seen(watcher.messages(cid))]
    assert seqs == list(range(first_seq, last + 1))
    acked = sorted(a["seq"] for d in devices for a in d.of_type("ack"))
    assert acked == list(range(first_seq, last + 1))
    for device in (*devices, watcher):
        await device.close()


async def test_a_burst_on_a_fresh_and_a_restarted_make_run(make_run):
    make_run.start()
    async with aiohttp.ClientSession() as session:
        *senders, reader = await sign_in_users(session, make_run.url, "ann", "ben", "cat", "dan")
        group = await senders[0].create_group("burst", [c.user_id for c in (*senders[1:], reader)])
        cid = group["conversation_id"]
        await burst(senders, reader, cid, first_seq=1)

    assert make_run.stop() == 0
    make_run.start()
    async with aiohttp.ClientSession() as session:
        users = [await Client.sign_in(session, make_run.url, c.user_id) for c in (*senders, reader)]
        await burst(users[:SENDERS], users[-1], cid, first_seq=SENDERS * EACH + 1)
        history = await full_history(users[-1], cid)
        assert [m["seq"] for m in history] == list(range(1, 2 * SENDERS * EACH + 1))


async def test_two_gateway_processes_share_the_port(tmp_path):
    """CHAT_GATEWAYS=2: two gateway processes on CHAT_PORT (SO_REUSEPORT), each its own id;
    sockets land on both, and a burst through both reaches a reader on either, in order."""
    run = MakeRun(tmp_path / "data")
    run.env["CHAT_GATEWAYS"] = "2"
    try:
        run.start()
        async with aiohttp.ClientSession() as session:
            clients = await sign_in_users(session, run.url, "eve", "fay", "gus", "hal")
            group = await clients[0].create_group("two", [c.user_id for c in clients[1:]])
            holders = set()
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
                for _ in range(16):  # the kernel spreads new connections over the two listeners
                    async with fresh.get(f"{run.url}/healthz") as r:
                        holders.add((await r.json()).get("gateway_id"))
            assert len(holders) == 2, holders
            await burst(clients[:SENDERS], clients[-1], group["conversation_id"], first_seq=1)
        logs = sorted(p.name for p in (tmp_path / "data" / "logs").glob("gateway*.log"))
        assert logs == ["gateway1.log", "gateway2.log"]
    finally:
        assert run.stop() == 0
