"""A load generator that speaks only PROTOCOL.md, over real HTTP and WebSockets.

    python -m bench.loadgen --url http://127.0.0.1:8080 --users 20 --group-size 5 \\
        --devices-per-user 2 --messages 500 --rate 100 [--json out.json] [--markdown out.md]

Phases, each bounded by a timeout:

1. setup: sign every user in (``POST /v1/dev/token``), open one WebSocket per device
   (``/v1/ws?device_id=``, wait for ``hello``), create the groups (``POST /v1/conversations``,
   retried while the server answers 503) and wait for their ``conversation`` frames;
2. warm-up: a few messages (default: one per group), sent one at a time, not measured;
3. measured: ``--messages`` ``send`` frames paced at ``--rate`` msg/s in total, round robin over
   the groups, their members and the members' devices;
4. drain: wait until every message is acked and delivered everywhere, or ``--drain-timeout``.

Per message it measures send-to-ack (at the sending device) and send-to-deliver (at every
other device of every member: from the send call to the ``message`` frame arriving, matched by
``(sender_id, client_msg_id)``). The sending device's own copy of the message is counted
apart ("echo"). Per (device, conversation) it counts duplicates (a ``seq`` seen twice) and
out-of-order frames (a ``seq`` lower than one already seen). All times are ``perf_counter``
readings taken in the frame reader, so they include this process's own event-loop delay,
which is measured too (``loop_lag_ms``): on a machine shared with the server it is not small.
With ``--procs N`` the users are split over N processes (``bench.procs``, which says how the
clocks are compared there); the summary is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import math
import os
import resource
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Callable

import aiohttp
import orjson

from bench import wsclient


MEMBERS_PER_REQUEST = 1_000  # the server's CHAT_MAX_MEMBERS_PER_REQUEST default


@dataclass
class Config:
    url: str = "http://127.0.0.1:8080"
    users: int = 20
    group_size: int = 5
    groups: int = 0                 # 0: users // group_size (each user in one group)
    devices_per_user: int = 2
    messages: int = 500
    rate: float = 100.0             # msg/s over all senders
    body_bytes: int = 64
    warmup: int = -1                # -1: one message per group
    setup_timeout_s: float = 60.0
    drain_timeout_s: float = 20.0
    request_timeout_s: float = 20.0
    concurrency: int = 16           # parallel HTTP calls / connects during setup
    run_id: str = ""                # prefix of the user ids; default: random
    senders: int = 0                # 0: every member of a group takes turns; N: its first N members only
    procs: int = 1                  # load generator processes (bench.procs); 1: this process alone
    shape: str = "turns"            # turns: round robin over groups and members; random: each
                                    # message from a user drawn at random, into that user's group
    group_first: bool = False       # build the groups before the devices connect (``setup``)
    client: str = "aiohttp"         # aiohttp: its WebSocket client; raw: bench.wsclient (frames
                                    # handled as they arrive, no task switch per frame)

    def n_groups(self) -> int:
        return self.groups or max(1, self.users // self.group_size)


# ---------------------------------------------------------------------------- state

class Dev:
    __slots__ = ("idx", "user", "device_id", "ws", "reader", "hello", "last_seq", "seen",
                 "conversations", "close_code", "closed_at")

    def __init__(self, idx: int, user: "User", device_id: str) -> None:
        self.idx = idx
        self.user = user
        self.device_id = device_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.hello = asyncio.Event()
        self.last_seq: dict[str, int] = {}
        self.seen: dict[tuple[str, int], str] = {}   # (conversation, seq) -> message_id
        self.conversations: set[str] = set()          # ids of `conversation` frames seen
        self.close_code: int | None = None
        self.closed_at: float | None = None


@dataclass(eq=False)
class User:
    idx: int
    user_id: str
    token: str = ""
    devices: list[Dev] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(eq=False)
class Group:
    idx: int
    members: list[User]
    conversation_id: str = ""

    @property
    def devices(self) -> list[Dev]:
        return [d for u in self.members for d in u.devices]


class Msg:
    __slots__ = ("k", "phase", "group", "sender", "cmid", "frame", "t_sched", "t_send", "t_ack",
                 "seq", "message_id", "error", "expected", "got", "echo", "wall_send", "sent_at", "local")

    def __init__(self, k: int, phase: str, group: Group, sender: Dev, cmid: str, body: str,
                 expected: set[int] | None = None, local: bool = True) -> None:
        self.k = k
        self.phase = phase
        self.group = group
        self.sender = sender
        self.cmid = cmid
        self.frame = orjson.dumps({"type": "send", "conversation_id": group.conversation_id,
                                   "client_msg_id": cmid, "body": body}).decode()
        self.t_sched = 0.0
        self.t_send: float | None = None
        self.t_ack: float | None = None
        self.seq: int | None = None
        self.message_id: str | None = None
        self.error: str | None = None
        # devices that should get it: the group's, less the sender (in bench.procs, this process's only)
        self.expected = ({d.idx for d in group.devices} if expected is None else expected) - {sender.idx}
        # device idx -> perf_counter at arrival; time.time() instead when the sender is not local
        self.got: dict[int, float] = {}
        self.local = local                # sent from this process (always, without bench.procs)
        self.echo: float | None = None    # arrival of the message frame at the sending device
        self.wall_send: float | None = None  # time.time() at the send, to compare with sent_at
        self.sent_at: int | None = None      # the sequencer's clock (ms) when it accepted the message


class Stats:
    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.duplicates = 0            # (device, conversation, seq) seen again
        self.dup_conflicts = 0         # same (conversation, seq) with another message_id
        self.out_of_order = 0          # seq lower than one already seen on that device
        self.ooo_pairs: Counter[tuple[str, str]] = Counter()
        self.dup_acks = 0
        self.misrouted_acks = 0        # ack at a device other than the sending one
        self.unknown_messages = 0      # message frames that match no message we sent
        self.wrong_device = 0          # message frames at a device outside the group
        self.unknown_acks = 0
        self.error_frames: list[dict[str, Any]] = []

    def reset(self) -> None:
        """Count afresh, in place: the frame readers hold on to this object."""
        self.__init__()  # type: ignore[misc]


# ---------------------------------------------------------------------------- helpers

def percentiles(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, p50/p95/p99 (nearest rank), max; in the values' unit."""
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(values)
    n = len(s)

    def rank(p: float) -> float:
        return s[min(n - 1, max(0, math.ceil(p / 100 * n) - 1))]

    return {"n": n, "mean": round(sum(s) / n, 3), "p50": round(rank(50), 3), "p95": round(rank(95), 3),
            "p99": round(rank(99), 3), "max": round(s[-1], 3)}


def owner_of(user_idx: int, cfg: Config) -> int:
    """Which of ``cfg.procs`` load generator processes holds a user's connections.

    Runs of ``group_size`` consecutive users (one group each, when groups do not overlap) stay
    together while there are at least as many runs as processes, so a group's deliveries are
    timed in the process that sent them; otherwise (one big group) the users are split evenly.
    """
    n = cfg.procs
    if n <= 1:
        return 0
    runs = -(-cfg.users // cfg.group_size)
    if runs >= n:
        return (user_idx // cfg.group_size) * n // runs
    return user_idx * n // cfg.users


def _install_uvloop() -> bool:
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class LoopLag:
    """How late this process's event loop wakes a 5 ms sleeper: the measurement's own noise."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            t = perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append((perf_counter() - t - self.interval) * 1000)

    def stop(self) -> None:
        if self._task:
            self._task.cancel()


# ---------------------------------------------------------------------------- the run

class LoadGen:
    """The whole load (``part`` None), or, in a ``bench.procs`` worker, the users that
    ``owner_of`` gives to process ``part``: it knows every user, group and message of the run
    but signs in, connects, creates groups and sends only for its own users."""

    def __init__(self, cfg: Config, part: int | None = None) -> None:
        if cfg.group_size < 2 or cfg.group_size > cfg.users:
            raise ValueError("group size must be between 2 and the number of users")
        if cfg.devices_per_user < 1 or cfg.messages < 1 or cfg.rate <= 0:
            raise ValueError("devices-per-user, messages and rate must be positive")
        self.cfg = cfg
        self.run_id = cfg.run_id or f"lg{uuid.uuid4().hex[:6]}"
        self.users = [User(i, f"{self.run_id}-u{i}") for i in range(cfg.users)]
        self.devices: list[Dev] = []
        for u in self.users:
            for j in range(cfg.devices_per_user):
                d = Dev(len(self.devices), u, f"d{j}")
                u.devices.append(d)
                self.devices.append(d)
        n = cfg.n_groups()
        self.groups = []
        for g in range(n):
            members = list(dict.fromkeys(self.users[(g * cfg.group_size + j) % cfg.users]
                                         for j in range(cfg.group_size)))
            self.groups.append(Group(g, members))
        self.part = part
        self.local_users = [u for u in self.users if part is None or owner_of(u.idx, cfg) == part]
        self.local_devices = [d for u in self.local_users for d in u.devices]
        self.local_idx = {d.idx for d in self.local_devices}
        self._group_local = {g.idx: {d.idx for d in g.devices if d.idx in self.local_idx} for g in self.groups}
        self._group_of: dict[int, Group] = {}  # user idx -> the first group they are in
        for g in self.groups:
            for u in g.members:
                self._group_of.setdefault(u.idx, g)
        self.msgs: dict[tuple[str, str], Msg] = {}
        self.stats = Stats()
        self.session: aiohttp.ClientSession | None = None
        self.timings: dict[str, float] = {}

    # --- frames ------------------------------------------------------------------------

    async def _read(self, dev: Dev) -> None:
        ws = dev.ws
        assert ws is not None
        try:
            async for m in ws:
                t = perf_counter()
                if m.type == aiohttp.WSMsgType.TEXT:
                    self._frame(dev, m.data, t)
        except Exception as exc:  # a bad frame is a finding, not a crash of the run
            self.stats.errors[f"client:{type(exc).__name__}"] += 1
        finally:
            dev.close_code = ws.close_code
            dev.closed_at = perf_counter()

    def _raw_frame(self, dev: Dev, data: bytes, t: float) -> None:
        try:
            self._frame(dev, data, t)
        except Exception as exc:  # as in _read: counted, and the connection reads on
            self.stats.errors[f"client:{type(exc).__name__}"] += 1

    async def _watch(self, dev: Dev) -> None:
        """The ``raw`` client's stand-in for the reader task: notes when the socket closed."""
        ws = dev.ws
        try:
            await ws.done  # type: ignore[union-attr]
        finally:
            dev.close_code = ws.close_code  # type: ignore[union-attr]
            dev.closed_at = perf_counter()

    def _frame(self, dev: Dev, data: bytes | str, t: float) -> None:
        """One text frame that reached ``dev`` at ``t``."""
        stats = self.stats
        f = orjson.loads(data)
        kind = f.get("type")
        stats.frames[kind] += 1
        if kind == "message":
            self._on_message(dev, f["message"], t)
        elif kind == "ack":
            msg = self.msgs.get((dev.user.user_id, f.get("client_msg_id")))
            if msg is None:
                stats.unknown_acks += 1
            elif msg.t_ack is not None:
                stats.dup_acks += 1
            else:
                msg.t_ack = t
                msg.seq = f.get("seq")
                msg.message_id = f.get("message_id")
                msg.sent_at = f.get("sent_at")
                if dev is not msg.sender:
                    stats.misrouted_acks += 1
        elif kind == "error":
            stats.errors[f.get("code", "?")] += 1
            if len(stats.error_frames) < 20:
                stats.error_frames.append(f)
            msg = self.msgs.get((dev.user.user_id, f.get("ref")))
            if msg is not None and msg.error is None and msg.t_ack is None:
                msg.error = f.get("code", "?")
        elif kind == "conversation":
            dev.conversations.add(f["conversation"]["conversation_id"])
        elif kind == "hello":
            dev.hello.set()

    def _on_message(self, dev: Dev, m: dict[str, Any], t: float) -> None:
        stats = self.stats
        conv, seq = m["conversation_id"], m["seq"]
        key = (conv, seq)
        prev = dev.seen.get(key)
        if prev is not None:
            stats.duplicates += 1
            if prev != m["message_id"]:
                stats.dup_conflicts += 1
            return
        dev.seen[key] = m["message_id"]
        if seq < dev.last_seq.get(conv, 0):
            stats.out_of_order += 1
            stats.ooo_pairs[(f"{dev.user.user_id}/{dev.device_id}", conv)] += 1
        else:
            dev.last_seq[conv] = seq
        msg = self.msgs.get((m["sender_id"], m["client_msg_id"]))
        if msg is None or msg.group.conversation_id != conv:
            stats.unknown_messages += 1
        elif dev is msg.sender:
            msg.echo = t
        elif dev.idx in msg.expected:
            msg.got[dev.idx] = t if msg.local else time.time()
        else:
            stats.wrong_device += 1

    # --- setup ---------------------------------------------------------------------------

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.cfg.request_timeout_s)

    async def _sign_in(self, user: User) -> None:
        assert self.session
        async with self.session.post(f"{self.cfg.url}/v1/dev/token", json={"user_id": user.user_id},
                                     timeout=self._timeout()) as r:
            if r.status != 200:
                raise RuntimeError(f"sign-in {user.user_id}: {r.status} {await r.text()}")
            user.token = (await r.json())["token"]

    async def _connect(self, dev: Dev) -> None:
        assert self.session
        url = f"{self.cfg.url.replace('http', 'ws', 1)}/v1/ws?device_id={dev.device_id}"
        if self.cfg.client == "raw":
            dev.ws = await wsclient.connect(url, dev.user.headers, lambda data, t: self._raw_frame(dev, data, t),
                                            perf_counter, self.cfg.request_timeout_s)
            dev.reader = asyncio.create_task(self._watch(dev))
        else:
            dev.ws = await self.session.ws_connect(
                url, headers=dev.user.headers, autoping=True,
                heartbeat=None, max_msg_size=0, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
            dev.reader = asyncio.create_task(self._read(dev))
        await asyncio.wait_for(dev.hello.wait(), self.cfg.request_timeout_s)

    async def _create_group(self, group: Group, deadline: float) -> None:
        """Create the group; members past the server's 1,000 per request are added 1,000 at a time."""
        assert self.session
        creator = group.members[0]
        others = [u.user_id for u in group.members[1:]]
        body = {"type": "group", "name": f"{self.run_id}-g{group.idx}", "description": "loadgen",
                "members": others[:MEMBERS_PER_REQUEST]}
        answer = await self._post_retrying("/v1/conversations", body, creator, 201, deadline, f"create group {group.idx}")
        group.conversation_id = answer["conversation_id"]
        for i in range(MEMBERS_PER_REQUEST, len(others), MEMBERS_PER_REQUEST):
            await self._post_retrying(f"/v1/conversations/{group.conversation_id}/members",
                                      {"user_ids": others[i:i + MEMBERS_PER_REQUEST]}, creator, 200, deadline,
                                      f"add members to group {group.idx}")

    async def _post_retrying(self, path: str, body: dict[str, Any], user: "User", status: int, deadline: float,
                             what: str) -> dict[str, Any]:
        assert self.session
        while True:
            async with self.session.post(f"{self.cfg.url}{path}", json=body, headers=user.headers,
                                         timeout=self._timeout()) as r:
                text = await r.text()
                if r.status == status:
                    return orjson.loads(text)
                if r.status != 503 or perf_counter() > deadline:
                    raise RuntimeError(f"{what}: {r.status} {text}")
            await asyncio.sleep(0.5)

    async def _bounded(self, fn: Callable[[Any], Any], items: list[Any]) -> None:
        sem = asyncio.Semaphore(self.cfg.concurrency)

        async def one(item: Any) -> None:
            async with sem:
                await fn(item)

        await asyncio.gather(*(one(i) for i in items))

    async def setup(self) -> None:
        """Connect, then build the groups and check every device heard of them; or, with
        ``group_first``, build them before the devices connect (``announce`` first)."""
        deadline = perf_counter() + self.cfg.setup_timeout_s
        if self.cfg.group_first:
            await self.announce()
            await self.create_groups(deadline)
            await self.connect_devices()
            self.missing_conversation_frames = None
            return
        await self.connect_all()
        await self.create_groups(deadline)
        await self.await_conversations(deadline)

    async def connect_all(self) -> None:
        """Sign in (this process's) users and open their devices' WebSockets."""
        t = perf_counter()
        await self._bounded(self._sign_in, self.local_users)
        self.timings["sign_in_s"] = perf_counter() - t
        await self.connect_devices()

    async def connect_devices(self) -> None:
        t = perf_counter()
        await self._bounded(self._connect, self.local_devices)
        self.timings["connect_s"] = perf_counter() - t

    async def announce(self) -> None:
        """For ``group_first``: sign in, and connect and close every device before any group
        exists. Each member connecting into a big group would otherwise send a ``presence``
        frame to every member already connected (O(n²) frames); connected once here, a user
        reads online, and connecting again after the group is built changes nothing while
        the server's presence debounce (``CHAT_PRESENCE_DEBOUNCE_S``) has not run out. (Built
        after the devices connect, every member addition would send the whole member list to
        every connected member instead: O(n²) bytes.)"""
        t = perf_counter()
        await self._bounded(self._sign_in, self.local_users)
        self.timings["sign_in_s"] = perf_counter() - t
        t = perf_counter()

        async def once(dev: Dev) -> None:
            await self._connect(dev)
            await dev.ws.close()  # type: ignore[union-attr]
            if dev.reader is not None:
                await dev.reader
            dev.ws, dev.reader, dev.hello = None, None, asyncio.Event()
            dev.close_code = dev.closed_at = None

        await self._bounded(once, self.local_devices)
        self.timings["announce_s"] = perf_counter() - t

    async def create_groups(self, deadline: float) -> None:
        """Create the groups whose creator (first member) is one of this process's users."""
        t = perf_counter()
        mine = [g for g in self.groups if g.members[0].devices[0].idx in self.local_idx]
        await self._bounded(lambda g: self._create_group(g, deadline), mine)
        self.timings["groups_s"] = perf_counter() - t

    async def await_conversations(self, deadline: float) -> None:
        """Every (local) member device should get its groups' `conversation` frames (fan-out check)."""
        t = perf_counter()

        def missing() -> int:
            return sum(1 for g in self.groups for d in g.devices
                       if d.idx in self.local_idx and g.conversation_id not in d.conversations)

        while perf_counter() < min(deadline, t + 10.0) and missing():
            await asyncio.sleep(0.02)
        self.missing_conversation_frames = missing()
        self.timings["conversation_frames_s"] = perf_counter() - t

    # --- phases ----------------------------------------------------------------------------

    def plan(self, phase: str, count: int, start: int = 0) -> list[Msg]:
        cfg = self.cfg
        out = []
        n = len(self.groups)
        pad = "x" * max(0, cfg.body_bytes - 16)
        for i in range(start, start + count):
            if cfg.shape == "random" and phase != "warmup":
                g, user, dev = self._random_sender(phase, i)
            else:
                g = self.groups[i % n]
                turn = i // n
                senders = min(cfg.senders, len(g.members)) if cfg.senders > 0 else len(g.members)
                user = g.members[turn % senders]
                dev = user.devices[(turn // senders) % len(user.devices)]
            cmid = f"{self.run_id}.{phase}.{i}"
            msg = Msg(i, phase, g, dev, cmid, f"{phase} {i} {pad}", self._group_local[g.idx],
                      dev.idx in self.local_idx)
            self.msgs[(user.user_id, cmid)] = msg
            out.append(msg)
        return out

    def _random_sender(self, phase: str, i: int) -> tuple[Group, User, Dev]:
        """Message ``i``'s sender under ``--shape random``: a user drawn at random (the same draw
        in every load generator process), sending into their group from one of their devices."""
        draw = random.Random(f"{self.run_id}:{phase}:{i}")
        user = self.users[draw.randrange(len(self.users))]
        while user.idx not in self._group_of:  # (more users than the groups hold)
            user = self.users[draw.randrange(len(self.users))]
        return self._group_of[user.idx], user, user.devices[draw.randrange(len(user.devices))]

    @staticmethod
    def _settled(msgs: list[Msg]) -> bool:
        return all((m.t_ack is not None or m.error is not None) and
                   (m.error is not None or len(m.got) == len(m.expected)) for m in msgs if m.t_send is not None)

    async def _drain(self, msgs: list[Msg], timeout: float) -> float:
        t = perf_counter()
        end = t + timeout
        while perf_counter() < end and not self._settled(msgs):
            await asyncio.sleep(0.02)
        return perf_counter() - t

    async def warmup(self) -> None:
        n = len(self.groups) if self.cfg.warmup < 0 else self.cfg.warmup
        t = perf_counter()
        for msg in self.plan("warmup", n):
            if not msg.local:
                continue
            msg.t_send = msg.t_sched = perf_counter()
            await msg.sender.ws.send_str(msg.frame)  # type: ignore[union-attr]
            await self._drain([msg], self.cfg.drain_timeout_s)
        self.warmup_msgs = [m for m in self.msgs.values() if m.phase == "warmup"]
        self.timings["warmup_s"] = perf_counter() - t

    async def measure(self, phase: str = "m", rate: float | None = None, count: int | None = None,
                      t0: float | None = None, drain: bool = True) -> tuple[list[Msg], float, float]:
        """Send ``count`` messages (default ``--messages``) at ``rate`` msg/s in total from ``t0``
        (a perf_counter time; default now); this process sends only its own users' share."""
        cfg = self.cfg
        rate = rate or cfg.rate
        count = count or cfg.messages
        msgs = self.plan(phase, count)
        t0 = perf_counter() + 0.01 if t0 is None else t0
        budget = count / rate * 3 + 30.0 + max(0.0, t0 - perf_counter())
        try:
            async with asyncio.timeout(budget):
                for i, msg in enumerate(msgs):
                    if not msg.local:
                        continue
                    target = t0 + i / rate
                    delay = target - perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    if msg.sender.ws is None or msg.sender.ws.closed:
                        msg.error = "client:closed"
                        continue
                    msg.t_sched = target
                    msg.wall_send = time.time()
                    msg.t_send = perf_counter()
                    await msg.sender.ws.send_str(msg.frame)
        except TimeoutError:
            pass  # the unsent ones keep t_send None and are reported as not sent
        t_sent = perf_counter()
        if drain:
            self.timings["drain_s"] = await self._drain(msgs, cfg.drain_timeout_s)
        return msgs, t0, t_sent

    async def close(self) -> None:
        for d in self.devices:
            if d.ws is not None and not d.ws.closed:
                try:
                    await asyncio.wait_for(d.ws.close(), 5.0)
                except (asyncio.TimeoutError, Exception):
                    pass
            if d.reader is not None:
                d.reader.cancel()
        if self.session is not None:
            await self.session.close()

    # --- results ---------------------------------------------------------------------------

    def results(self, msgs: list[Msg], t0: float, t_sent: float, lag: LoopLag) -> dict[str, Any]:
        stats = self.stats
        sent = [m for m in msgs if m.t_send is not None]
        acked = [m for m in sent if m.t_ack is not None]
        rejected = [m for m in sent if m.error is not None and m.t_ack is None]
        ack_ms = [(m.t_ack - m.t_send) * 1000 for m in acked]  # type: ignore[operator]
        deliver_ms = [(t - m.t_send) * 1000 for m in sent for t in m.got.values()]  # type: ignore[operator]
        echo_ms = [(m.echo - m.t_send) * 1000 for m in sent if m.echo is not None]  # type: ignore[operator]
        # per message that reached every expected device: send -> the last of them has it (fan-out)
        last_ms = [(max(m.got.values()) - m.t_send) * 1000 for m in sent  # type: ignore[operator]
                   if m.got and len(m.got) == len(m.expected)]
        lag_ms = [(m.t_send - m.t_sched) * 1000 for m in sent]  # type: ignore[operator]
        expected = sum(len(m.expected) for m in sent if m.error is None or m.t_ack is not None)
        received = sum(len(m.got) for m in sent)
        last_ack = max((m.t_ack for m in acked), default=t0)  # type: ignore[type-var]
        first_ack = min((m.t_ack for m in acked), default=t0)  # type: ignore[type-var]
        first_send = min((m.t_send for m in sent), default=t0)  # type: ignore[type-var]
        last_deliver = max((t for m in sent for t in m.got.values()), default=t0)
        # Seq integrity from the acks: per conversation, 1..n with no gap and no repeat.
        by_conv: dict[str, list[int]] = defaultdict(list)
        for m in list(getattr(self, "warmup_msgs", [])) + acked:
            if m.seq is not None:
                by_conv[m.group.conversation_id].append(m.seq)
        seq_problems = {c: "not 1..n" for c, seqs in by_conv.items() if sorted(seqs) != list(range(1, len(seqs) + 1))}
        # Split send->ack at the sequencer's decision (sent_at, server clock; same machine here).
        to_seq = [m.sent_at - m.wall_send * 1000 for m in acked if m.sent_at and m.wall_send]
        seq_to_ack = [(m.t_ack - m.t_send) * 1000 - d for m, d in
                      zip([m for m in acked if m.sent_at and m.wall_send], to_seq)]  # type: ignore[operator]
        # Time series over the send window: what was sent in each slice, and how it fared.
        slice_s = max(0.25, (t_sent - first_send) / 20)
        timeline = []
        for i in range(int((t_sent - first_send) / slice_s) + 1):
            lo, hi = first_send + i * slice_s, first_send + (i + 1) * slice_s
            part = [m for m in sent if lo <= m.t_send < hi]  # type: ignore[operator]
            lat = percentiles([(m.t_ack - m.t_send) * 1000 for m in part if m.t_ack is not None])  # type: ignore[operator]
            acks_in = sum(1 for m in acked if lo <= m.t_ack < hi)  # type: ignore[operator]
            timeline.append({"t_s": round(i * slice_s, 2), "sent": len(part), "acks_arriving": acks_in,
                             "ack_p50_ms": lat["p50"], "ack_max_ms": lat["max"]})
        lost_by_msg = [m for m in sent if (m.error is None or m.t_ack is not None) and len(m.got) < len(m.expected)]
        disconnects = [f"{d.user.user_id}/{d.device_id}:{d.close_code}" for d in self.devices if d.closed_at is not None]
        return {
            "config": asdict(self.cfg) | {"run_id": self.run_id, "groups": len(self.groups),
                                          "devices": len(self.devices)},
            "setup": {k: round(v, 3) for k, v in self.timings.items()},
            "missing_conversation_frames": getattr(self, "missing_conversation_frames", None),
            "sent": len(sent),
            "not_sent": len(msgs) - len(sent),
            "acked": len(acked),
            "rejected": len(rejected),
            "unanswered": len(sent) - len(acked) - len(rejected),
            "errors": dict(stats.errors),
            "send_duration_s": round(t_sent - first_send, 3),
            "offered_msg_s": round(len(sent) / max(1e-9, t_sent - first_send), 1),
            # accepted msg/s between the first and the last ack: the rate the system sustained
            "throughput_msg_s": round((len(acked) - 1) / (last_ack - first_ack), 1) if len(acked) > 1 else None,
            # acked / (first send .. last ack): includes one latency of ramp-up and tail
            "end_to_end_msg_s": round(len(acked) / max(1e-9, last_ack - first_send), 1),
            "deliveries_per_s": round(received / max(1e-9, last_deliver - first_send), 1),
            "ack_ms": percentiles(ack_ms),
            "deliver_ms": percentiles(deliver_ms),
            "echo_ms": percentiles(echo_ms),
            "last_delivery_ms": percentiles(last_ms),
            "send_to_sequenced_ms": percentiles(to_seq),
            "sequenced_to_ack_ms": percentiles(seq_to_ack),
            "timeline": timeline,
            "deliveries": {
                "expected": expected, "received": received, "lost": expected - received,
                "messages_with_losses": len(lost_by_msg),
                "echo_received": len(echo_ms),
                "duplicates": stats.duplicates, "duplicate_conflicts": stats.dup_conflicts,
                "out_of_order": stats.out_of_order,
                "out_of_order_pairs": len(stats.ooo_pairs),
                "unknown_messages": stats.unknown_messages, "wrong_device": stats.wrong_device,
            },
            "acks": {"duplicates": stats.dup_acks, "misrouted": stats.misrouted_acks,
                     "unknown": stats.unknown_acks, "seq_problems": seq_problems},
            "schedule_lag_ms": percentiles(lag_ms),
            "loop_lag_ms": percentiles(lag.samples),
            "disconnects": disconnects,
            "frames_in": dict(stats.frames),
            "error_samples": stats.error_frames[:5],
            "lost_samples": [{"cmid": m.cmid, "seq": m.seq, "acked": m.t_ack is not None, "error": m.error,
                              "missing": sorted(f"{self.devices[i].user.user_id}/{self.devices[i].device_id}"
                                                for i in m.expected - set(m.got))}
                             for m in lost_by_msg[:5]],
        }


async def run(cfg: Config, on_measure_start: Callable[[], Any] | None = None,
              on_measure_end: Callable[[], Any] | None = None, raw: bool = False) -> dict[str, Any]:
    """Set up, warm up, measure, drain, close; returns the results dict. Always bounded.

    ``raw``: also return ``result["_messages"]`` (per message: sender, client_msg_id, wall-clock
    send and ack times), for tracing the message through the topics (bench.trace_topics).
    With ``cfg.procs`` > 1 the load runs in that many worker processes (``bench.procs``); this
    process only drives and merges them, and blocks while it does.
    """
    if cfg.procs > 1:
        from bench import procs
        uv = type(asyncio.get_event_loop_policy()).__module__.startswith("uvloop")
        return procs.run(cfg, on_measure_start, on_measure_end, raw, uvloop=uv)
    gen = LoadGen(cfg)
    gen.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    lag = LoopLag()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    hooks: dict[str, Any] = {}
    try:
        async with asyncio.timeout(cfg.setup_timeout_s + 10):
            await gen.setup()
        async with asyncio.timeout(cfg.drain_timeout_s * max(1, len(gen.groups)) + 30):
            await gen.warmup()
        if on_measure_start:
            hooks["start"] = on_measure_start()
        lag.start()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        msgs, t0, t_sent = await gen.measure()
        cpu2 = resource.getrusage(resource.RUSAGE_SELF)
        lag.stop()
        if on_measure_end:
            hooks["end"] = on_measure_end()
        result = gen.results(msgs, t0, t_sent, lag)
        result["loadgen_cpu_s"] = round(cpu2.ru_utime + cpu2.ru_stime - cpu1.ru_utime - cpu1.ru_stime, 2)
        result["loadgen_cpu_total_s"] = round(cpu2.ru_utime + cpu2.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2)
        result["hooks"] = hooks
        if raw:
            result["_messages"] = [
                {"sender_id": m.sender.user.user_id, "client_msg_id": m.cmid, "wall_send": m.wall_send,
                 "wall_ack": None if m.t_ack is None else m.wall_send + (m.t_ack - m.t_send)}  # type: ignore[operator]
                for m in msgs if m.wall_send is not None]
        warm = getattr(gen, "warmup_msgs", [])
        result["warmup"] = {"messages": len(warm), "acked": sum(m.t_ack is not None for m in warm),
                            "ack_ms": percentiles([(m.t_ack - m.t_send) * 1000 for m in warm
                                                   if m.t_ack is not None and m.t_send is not None])}
        return result
    finally:
        lag.stop()
        await gen.close()


# ---------------------------------------------------------------------------- reporting

def _f(v: Any) -> str:
    return "–" if v is None else (f"{v:.1f}" if isinstance(v, float) else str(v))


def _lat(p: dict[str, Any]) -> str:
    return " / ".join(_f(p[k]) for k in ("p50", "p95", "p99", "max"))


def summary_rows(r: dict[str, Any]) -> list[tuple[str, str]]:
    d = r["deliveries"]
    c = r["config"]
    return [
        ("users × devices, groups × size", f"{c['users']} × {c['devices_per_user']}, {c['groups']} × {c['group_size']}"),
        ("messages sent / acked / rejected / unanswered",
         f"{r['sent']} / {r['acked']} / {r['rejected']} / {r['unanswered']}" + (f" (not sent {r['not_sent']})" if r['not_sent'] else "")),
        ("offered rate (msg/s)", _f(r["offered_msg_s"])),
        ("throughput, accepted msg/s (first→last ack)", _f(r["throughput_msg_s"])),
        ("acked / (first send→last ack) msg/s", _f(r["end_to_end_msg_s"])),
        ("deliveries per second", _f(r["deliveries_per_s"])),
        ("send→ack ms p50 / p95 / p99 / max", _lat(r["ack_ms"])),
        ("send→deliver ms p50 / p95 / p99 / max", _lat(r["deliver_ms"])),
        ("send→own-device echo ms p50 / p99", f"{_f(r['echo_ms']['p50'])} / {_f(r['echo_ms']['p99'])}"),
        ("  of send→ack: send→sequenced (sent_at) ms p50 / p99",
         f"{_f(r['send_to_sequenced_ms']['p50'])} / {_f(r['send_to_sequenced_ms']['p99'])}"),
        ("  of send→ack: sequenced→ack ms p50 / p99",
         f"{_f(r['sequenced_to_ack_ms']['p50'])} / {_f(r['sequenced_to_ack_ms']['p99'])}"),
        ("deliveries received / expected", f"{d['received']} / {d['expected']}"),
        ("lost (messages affected)", f"{d['lost']} ({d['messages_with_losses']})"),
        ("duplicates", str(d["duplicates"])),
        ("out of order (device, conversation pairs)", f"{d['out_of_order']} ({d['out_of_order_pairs']})"),
        ("ack duplicates / misrouted / seq problems",
         f"{r['acks']['duplicates']} / {r['acks']['misrouted']} / {len(r['acks']['seq_problems'])}"),
        ("error frames", ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"),
        ("disconnects", str(len(r["disconnects"]))),
        ("send schedule lag ms p99 / max", f"{_f(r['schedule_lag_ms']['p99'])} / {_f(r['schedule_lag_ms']['max'])}"),
        ("load generator loop lag ms p99 / max", f"{_f(r['loop_lag_ms']['p99'])} / {_f(r['loop_lag_ms']['max'])}"),
        ("load generator CPU s (measured phase)", _f(r.get("loadgen_cpu_s"))),
    ]


def markdown(r: dict[str, Any], title: str = "Load generator run", extra: list[tuple[str, str]] | None = None) -> str:
    lines = [f"### {title}", "", "| | |", "|---|---|"]
    for k, v in (extra or []) + summary_rows(r):
        lines.append(f"| {k} | {v} |")
    return "\n".join(lines) + "\n"


def print_summary(r: dict[str, Any], out: Any = sys.stdout) -> None:
    for k, v in summary_rows(r):
        print(f"{k:48} {v}", file=out)


def parser(p: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = p or argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    d = Config()
    p.add_argument("--url", default=d.url)
    p.add_argument("--users", type=int, default=d.users)
    p.add_argument("--group-size", type=int, default=d.group_size)
    p.add_argument("--groups", type=int, default=d.groups, help="default: users // group-size")
    p.add_argument("--devices-per-user", type=int, default=d.devices_per_user)
    p.add_argument("--messages", type=int, default=d.messages)
    p.add_argument("--rate", type=float, default=d.rate, help="msg/s in total")
    p.add_argument("--body-bytes", type=int, default=d.body_bytes)
    p.add_argument("--warmup", type=int, default=d.warmup, help="warm-up messages; default one per group")
    p.add_argument("--setup-timeout", type=float, default=d.setup_timeout_s)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--request-timeout", type=float, default=d.request_timeout_s)
    p.add_argument("--run-id", default="")
    p.add_argument("--senders", type=int, default=d.senders,
                   help="only the first N members of each group send (default 0: all take turns)")
    p.add_argument("--shape", choices=["turns", "random"], default=d.shape,
                   help="turns: round robin over groups and members; random: every user may send, at random")
    p.add_argument("--procs", type=int, default=d.procs,
                   help="load generator processes; each holds its share of the users and sends at rate/N")
    p.add_argument("--client", choices=["aiohttp", "raw"], default=d.client,
                   help="WebSocket client: aiohttp's, or bench.wsclient (each frame handled as it arrives)")
    p.add_argument("--no-uvloop", action="store_true")
    p.add_argument("--json", type=Path, help="write the results dict here")
    p.add_argument("--markdown", type=Path, help="append a markdown section here")
    return p


def config_from(args: argparse.Namespace) -> Config:
    return Config(url=args.url.rstrip("/"), users=args.users, group_size=args.group_size, groups=args.groups,
                  devices_per_user=args.devices_per_user, messages=args.messages, rate=args.rate,
                  body_bytes=args.body_bytes, warmup=args.warmup, setup_timeout_s=args.setup_timeout,
                  drain_timeout_s=args.drain_timeout, request_timeout_s=args.request_timeout,
                  run_id=args.run_id, senders=args.senders, procs=args.procs,
                  shape=args.shape, client=args.client)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = config_from(args)
    if not args.no_uvloop:
        _install_uvloop()
    per_user = cfg.rate / cfg.users
    if per_user > 50:
        print(f"note: {per_user:.0f} msg/s per user is above PROTOCOL.md's 50/s sustained limit", file=sys.stderr)
    result = asyncio.run(run(cfg))
    result["command"] = " ".join(["python -m bench.loadgen"] + (argv if argv is not None else sys.argv[1:]))
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
    print_summary(result)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n" + markdown(result, f"{result['date']}: `{result['command']}`") + "\n")
    d = result["deliveries"]
    ok = d["lost"] == 0 and d["duplicates"] == 0 and d["out_of_order"] == 0 and result["acked"] == result["sent"]
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
