"""The load generator in several processes: ``python -m bench.loadgen --procs N ...``.

The parent starts N worker processes (``multiprocessing``, spawn). Each builds the same
``LoadGen`` (same run id, so the same users, groups and message plan) for its part: the users
that ``loadgen.owner_of`` gives it. It signs in, connects, creates groups and sends only for
those users, at its share of the rate (message ``i`` of the plan is due at ``t0 + i / rate``
whichever process sends it), and records what its own devices receive. The parent drives the
phases, each a command to every worker and a bounded wait for every answer:

    connect -> create -> groups -> warmup -> (measure -> drain) per step -> close

and merges the workers' raw samples (per message: send, ack and arrival times; per step: the
counters, loop lag and CPU) into one ``LoadGen.results()`` dict, the same as a one-process run.

Clocks. ``perf_counter`` readings compare within a process only. send->ack is measured in
the sending process (perf_counter), and so is send->deliver when the receiving device is in
the sending process. A delivery to a device of another process is stamped with ``time.time()``
on arrival and compared with the sender's ``time.time()`` at the send (one machine, one clock).
The merge puts everything on the senders' wall-clock timeline.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import resource
import signal
import time
import traceback
from dataclasses import replace
from time import perf_counter
from typing import Any, Callable

import aiohttp

from bench.loadgen import Config, LoadGen, LoopLag, Msg, _install_uvloop
from bench.merge import merge_step, merge_warmup


# ---------------------------------------------------------------------------- a worker

def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


async def _recv(conn: multiprocessing.connection.Connection) -> Any:
    """The next command, without blocking the event loop (readable pipe; EOF if the parent died)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
        # the loop (uvloop) made the socket non-blocking; Connection.send of a large report
        # would then fail half-way with EAGAIN
        os.set_blocking(conn.fileno(), True)
    return conn.recv()


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Worker:
    def __init__(self, cfg: Config, part: int) -> None:
        self.gen = LoadGen(cfg, part)
        self.lag = LoopLag()
        self.msgs: list[Msg] = []
        self.t_sent = 0.0
        self.drained = 0.0
        self.cpu0 = 0.0

    @staticmethod
    def _perf(wall: float) -> float:
        return perf_counter() + (wall - time.time())

    async def connect(self, _: Any) -> dict[str, float]:
        if self.gen.cfg.group_first:  # (the devices connect once the groups exist: ``groups``)
            await self.gen.announce()
        else:
            await self.gen.connect_all()
        return self.gen.timings

    async def create(self, deadline: float) -> dict[int, str]:
        await self.gen.create_groups(self._perf(deadline))
        return {g.idx: g.conversation_id for g in self.gen.groups if g.conversation_id}

    async def groups(self, arg: tuple[dict[int, str], float]) -> tuple[int | None, dict[str, float]]:
        ids, deadline = arg
        for g in self.gen.groups:
            g.conversation_id = ids[g.idx]
        if self.gen.cfg.group_first:
            await self.gen.connect_devices()
            return None, self.gen.timings
        await self.gen.await_conversations(self._perf(deadline))
        return self.gen.missing_conversation_frames, self.gen.timings

    async def warmup(self, _: Any) -> list[tuple[Any, ...]]:
        await self.gen.warmup()
        return [(m.k, m.seq, None if m.t_ack is None else m.t_ack - m.t_send)  # type: ignore[operator]
                for m in self.gen.warmup_msgs if m.local and m.t_send is not None]

    async def measure(self, arg: tuple[str, float, int, float]) -> dict[str, Any]:
        phase, rate, count, t0 = arg
        gen = self.gen
        gen.stats.reset()
        self.lag = LoopLag()
        self.lag.start()
        self.cpu0 = _cpu()
        self.msgs, _, _ = await gen.measure(phase, rate, count, self._perf(t0), drain=False)
        self.t_sent = time.time()
        pending = [m for m in self.msgs if m.local and m.t_send is not None]
        end = perf_counter() + gen.cfg.drain_timeout_s
        while pending and perf_counter() < end:
            await asyncio.sleep(0.02)
            pending = [m for m in pending if m.t_ack is None and m.error is None]
        excluded = [m.k for m in self.msgs if m.local and (m.t_send is None or (m.error and m.t_ack is None))]
        return {"excluded": excluded, "t_sent": self.t_sent}

    async def drain(self, arg: tuple[list[int], float]) -> dict[str, Any]:
        excluded, deadline = set(arg[0]), self._perf(arg[1])
        pending = [m for m in self.msgs if m.k not in excluded and m.expected]
        while pending and perf_counter() < deadline:
            pending = [m for m in pending if len(m.got) < len(m.expected)]
            await asyncio.sleep(0.02)
        self.drained = time.time()
        self.lag.stop()
        return self.report()

    def report(self) -> dict[str, Any]:
        sent, got = [], []
        for m in self.msgs:
            if m.local:
                if m.t_send is None:
                    sent.append((m.k, None, None, None, None, None, None, m.error, None))
                    continue
                wall = m.wall_send
                rel = (lambda t: None if t is None else t - m.t_send)  # noqa: E731
                sent.append((m.k, wall - (m.t_send - m.t_sched), wall, rel(m.t_ack), m.seq, m.message_id,
                             m.sent_at, m.error, rel(m.echo)))
                got.extend((m.k, d, wall + (t - m.t_send)) for d, t in m.got.items())
            else:
                got.extend((m.k, d, t) for d, t in m.got.items())
        gen = self.gen
        return {"sent": sent, "got": got, "stats": vars(gen.stats), "lag_ms": self.lag.samples,
                "cpu_s": _cpu() - self.cpu0, "cpu_total_s": _cpu(), "t_sent": self.t_sent,
                "drained": self.drained,
                "disconnects": [(d.idx, d.close_code) for d in gen.local_devices if d.closed_at is not None]}


async def _serve(conn: multiprocessing.connection.Connection, cfg: Config, part: int) -> None:
    worker = Worker(cfg, part)
    worker.gen.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        while True:
            cmd, arg = await _recv(conn)
            if cmd == "close":
                return
            try:
                reply = await getattr(worker, cmd)(arg)
            except Exception:
                conn.send(("error", traceback.format_exc()))
                return
            conn.send(("ok", reply))
    finally:
        worker.lag.stop()
        await worker.gen.close()


def worker_main(conn: multiprocessing.connection.Connection, cfg: Config, part: int, uvloop: bool) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops its workers itself
    _die_with_parent()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if uvloop:
        _install_uvloop()
    try:
        asyncio.run(_serve(conn, cfg, part))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent went away


# ---------------------------------------------------------------------------- the parent

class Fleet:
    """``cfg.procs`` worker processes, one pipe each. Every call waits a bounded time; ``close``
    always ends them (close command, then SIGTERM, then SIGKILL)."""

    def __init__(self, cfg: Config, uvloop: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[multiprocessing.connection.Connection] = []
        self.procs: list[Any] = []
        try:
            for part in range(cfg.procs):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=worker_main, args=(theirs, cfg, part, uvloop), name=f"loadgen-{part}",
                                daemon=True)
                p.start()
                theirs.close()
                self.conns.append(mine)
                self.procs.append(p)
        except BaseException:
            self.close()
            raise

    def ask(self, cmd: str, arg: Any, timeout: float) -> list[Any]:
        for c in self.conns:
            c.send((cmd, arg))
        replies: list[Any] = [None] * len(self.conns)
        pending = set(range(len(self.conns)))
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load generator processes {sorted(pending)}: no answer to {cmd!r} "
                                   f"after {timeout:.0f} s")
            for c in multiprocessing.connection.wait([self.conns[i] for i in pending], left):
                i = self.conns.index(c)  # type: ignore[arg-type]
                try:
                    kind, value = c.recv()  # type: ignore[union-attr]
                except EOFError:
                    self.procs[i].join(1)
                    raise RuntimeError(f"load generator process {i} exited (code {self.procs[i].exitcode}) "
                                       f"during {cmd!r}") from None
                if kind == "error":
                    raise RuntimeError(f"load generator process {i} failed during {cmd!r}:\n{value}")
                replies[i] = value
                pending.discard(i)
        return replies

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("close", None))
            except OSError:
                pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in self.conns:
            c.close()


class MultiLoad:
    """Set up once, then measure one or more steps (rate, count) on the same connections::

        with MultiLoad(cfg) as load:
            load.setup()
            result = load.step("m", 1000, 30000)
    """

    def __init__(self, cfg: Config, uvloop: bool = True) -> None:
        self.gen = LoadGen(cfg)  # the parent's full view of the run: the plan the merge fills
        self.cfg = replace(cfg, run_id=self.gen.run_id)
        self.uvloop = uvloop
        self.fleet: Fleet | None = None
        self.warmup: dict[str, Any] = {}
        self.msgs: list[Msg] = []  # the last step's messages, merged
        self.earlier: list[Msg] = []  # the warm-up's and earlier steps': their seqs come first

    def __enter__(self) -> "MultiLoad":
        self.fleet = Fleet(self.cfg, self.uvloop)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fleet is not None:
            self.fleet.close()

    def setup(self) -> None:
        cfg, gen, fleet = self.cfg, self.gen, self.fleet
        assert fleet is not None
        t = time.monotonic()
        for timings in fleet.ask("connect", None, cfg.setup_timeout_s + 60):  # + the workers' start
            for k, v in timings.items():
                gen.timings[k] = max(gen.timings.get(k, 0.0), v)
        gen.timings["procs_start_and_connect_s"] = time.monotonic() - t
        deadline = time.time() + cfg.setup_timeout_s
        ids: dict[int, str] = {}
        t = time.monotonic()
        for part in fleet.ask("create", deadline, cfg.setup_timeout_s + 10):
            ids.update(part)
        gen.timings["groups_s"] = time.monotonic() - t
        for g in gen.groups:
            g.conversation_id = ids[g.idx]
        t = time.monotonic()
        answers = fleet.ask("groups", (ids, time.time() + cfg.setup_timeout_s), cfg.setup_timeout_s + 10)
        missing = [m for m, _ in answers]
        gen.missing_conversation_frames = None if cfg.group_first else sum(missing)  # type: ignore[attr-defined]
        if cfg.group_first:
            gen.timings["connect_s"] = max(timings.get("connect_s", 0.0) for _, timings in answers)
        else:
            gen.timings["conversation_frames_s"] = time.monotonic() - t
        n = len(gen.groups) if cfg.warmup < 0 else cfg.warmup
        t = time.monotonic()
        warm = fleet.ask("warmup", None, cfg.drain_timeout_s * max(1, n) + 30)
        gen.timings["warmup_s"] = time.monotonic() - t
        self.warmup = merge_warmup(gen, n, warm)
        self.earlier = list(gen.warmup_msgs)  # type: ignore[attr-defined]

    def step(self, phase: str, rate: float, count: int, on_start: Callable[[], Any] | None = None,
             on_end: Callable[[], Any] | None = None) -> dict[str, Any]:
        """Send ``count`` messages at ``rate`` msg/s over all workers, drain, merge."""
        cfg, fleet = self.cfg, self.fleet
        assert fleet is not None
        if on_start:
            on_start()
        t0 = time.time() + 0.5  # the moment message 0 is due, in every worker
        sent = fleet.ask("measure", (phase, rate, count, t0), 0.5 + count / rate * 3 + 30 + cfg.drain_timeout_s + 10)
        excluded = [k for s in sent for k in s["excluded"]]
        deadline = max(s["t_sent"] for s in sent) + cfg.drain_timeout_s
        reports = fleet.ask("drain", (excluded, max(deadline, time.time() + 1)), cfg.drain_timeout_s + 30)
        if on_end:
            on_end()
        self.msgs = self.gen.plan(phase, count)
        self.gen.warmup_msgs = self.earlier  # type: ignore[attr-defined]  (results() checks seqs 1..n over these too)
        result = merge_step(self.gen, self.msgs, rate, reports, t0)
        self.earlier += self.msgs
        result["warmup"] = self.warmup
        return result


def run(cfg: Config, on_measure_start: Callable[[], Any] | None = None,
        on_measure_end: Callable[[], Any] | None = None, raw: bool = False, uvloop: bool = True) -> dict[str, Any]:
    """``loadgen.run`` over ``cfg.procs`` processes: the same results dict (plus ``procs``)."""
    with MultiLoad(cfg, uvloop) as load:
        load.setup()
        result = load.step("m", cfg.rate, cfg.messages, on_measure_start, on_measure_end)
        result["hooks"] = {}
        if raw:  # as loadgen.run: for bench.trace_topics (the merged times are wall-clock already)
            result["_messages"] = [{"sender_id": m.sender.user.user_id, "client_msg_id": m.cmid,
                                    "wall_send": m.wall_send, "wall_ack": m.t_ack}
                                   for m in load.msgs if m.wall_send is not None]
        return result
