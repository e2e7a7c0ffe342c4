"""Traffic that outlives faults, as real clients do, and the books to check it by.

Speaks only PROTOCOL.md. Every device reconnects when its socket closes (to the next gateway
on its list when one is gone) and syncs from its contiguous cursors; every sender re-sends a
message with the same ``client_msg_id`` until it is acked. Every message is counted by
``(conversation_id, seq)``; ``Traffic.finish`` stops the senders, waits for every ack, checks
the history, waits until every device holds all of it, and returns the counts.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.client import Client, contiguous_cursor, full_history, uid

RESEND_S = 2.0  # a send without an ack this long is sent again, with the same client_msg_id


class Roaming:
    """One device that keeps itself connected and synced."""

    def __init__(self, client: Client, device_id: str, urls: list[str]) -> None:
        self.client, self.device_id, self.urls = client, device_id, urls
        self.seen: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)  # cid -> seq -> message
        self.acks: dict[str, dict[str, Any]] = {}  # client_msg_id -> first ack
        self.ack_conflicts = self.reordered = self.duplicates = self.reconnects = 0
        self.errors: list[dict[str, Any]] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.synced = asyncio.Event()
        self._top: dict[str, int] = {}  # cid -> highest seq on this connection
        self._closing = False
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            url = self.urls[attempt % len(self.urls)].replace("http", "ws", 1)
            try:
                self.ws = await self.client.session.ws_connect(
                    f"{url}/v1/ws?device_id={self.device_id}", headers=self.client.headers, heartbeat=2.0)
            except (aiohttp.ClientError, OSError):
                attempt += 1
                await asyncio.sleep(0.2)
                continue
            self._top = {}
            await self.ws.send_json({"type": "sync", "cursors": self.cursors()})
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on(msg.json())
            self.ws, self.synced = None, asyncio.Event()
            if not self._closing:
                self.reconnects += 1
                attempt += 1
                await asyncio.sleep(0.1)

    def cursors(self) -> dict[str, int]:
        return {cid: contiguous_cursor(list(messages.values())) for cid, messages in self.seen.items()}

    def _on(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            m = frame["message"]
            cid, seq = m["conversation_id"], m["seq"]
            if seq in self.seen[cid]:
                self.duplicates += 1  # dropped by (conversation_id, seq), as PROTOCOL.md says
                return
            if seq < self._top.get(cid, 0):
                self.reordered += 1
            self._top[cid] = max(seq, self._top.get(cid, 0))
            self.seen[cid][seq] = m
        elif kind == "ack":
            first = self.acks.setdefault(frame["client_msg_id"], frame)
            if (first["conversation_id"], first["seq"]) != (frame["conversation_id"], frame["seq"]):
                self.ack_conflicts += 1
        elif kind == "synced":
            self.synced.set()
        elif kind == "error":
            self.errors.append(frame)

    async def send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is not None and not ws.closed:
            try:
                await ws.send_json(frame)
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                pass  # the reconnect loop takes over; the sender re-sends

    async def close(self) -> None:
        self._closing = True
        if self.ws is not None:
            await self.ws.close()
        self._task.cancel()


class Sender:
    """Sends ``rate`` messages a second round robin over conversations until stopped; re-sends
    what is not acked after ``RESEND_S``."""

    def __init__(self, device: Roaming, conversations: list[str], rate: float) -> None:
        self.device, self.conversations, self.rate = device, conversations, rate
        self.pending: dict[str, tuple[dict[str, Any], float]] = {}
        self.sent = self.resent = 0
        self.prefix = uid(device.device_id)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            cm = f"{self.prefix}-{self.sent}"
            frame = {"type": "send", "conversation_id": self.conversations[self.sent % len(self.conversations)],
                     "client_msg_id": cm, "body": f"body of {cm}"}
            self.pending[cm] = (frame, time.monotonic())
            self.sent += 1
            await self.device.send(frame)
            await self.resend_overdue()
            await asyncio.sleep(1 / self.rate)

    async def resend_overdue(self) -> None:
        now = time.monotonic()
        for cm, (frame, at) in list(self.pending.items()):
            if cm in self.device.acks:
                del self.pending[cm]
            elif now - at > RESEND_S:
                self.pending[cm] = (frame, now)
                self.resent += 1
                await self.device.send(frame)

    async def drain(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            await self.resend_overdue()
            if not self.pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.pending)} sends of {self.device.device_id} never acked")
            await asyncio.sleep(0.1)


@dataclass
class Counts:
    sent: int = 0
    resent: int = 0
    acked: int = 0
    messages: int = 0
    lost: int = 0
    duplicates: int = 0  # messages stored twice (one client_msg_id at two seqs)
    gaps: int = 0
    reordered: int = 0
    ack_conflicts: int = 0
    raw_duplicates: int = 0  # frames a device saw twice and dropped by (conversation_id, seq)
    reconnects: int = 0
    devices: int = 0
    converged: int = 0
    notes: list[str] = field(default_factory=list)  # what each device that did not converge lacks

    def line(self, fault: str) -> str:
        return (f"{fault}: sent {self.sent} (+{self.resent} re-sent), acked {self.acked}, stored {self.messages}, "
                f"lost {self.lost}, duplicates {self.duplicates}, gaps {self.gaps}, reordered {self.reordered}, "
                f"ack conflicts {self.ack_conflicts}, devices converged {self.converged}/{self.devices} "
                f"({self.reconnects} reconnects, {self.raw_duplicates} duplicate frames dropped)"
                + "".join(f"\n  {note}" for note in self.notes))


def spans(seqs: list[int]) -> str:
    """Sorted seqs as ranges: [1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    for s in seqs:
        if out and int(out[-1].split("-")[-1]) == s - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        else:
            out.append(str(s))
    return ", ".join(out)


class Traffic:
    """Groups of users, their devices spread over gateways, and senders in every group."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.devices: list[Roaming] = []
        self.senders: list[Sender] = []
        self.groups: dict[str, list[Client]] = {}
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, session: aiohttp.ClientSession, urls: list[str], *, groups: int = 3, members: int = 3,
                    rate: float = 10.0) -> "Traffic":
        """``groups`` groups of ``members`` users, each with a device on every gateway (each
        device falls back to the other gateways); one sender per group on its first device."""
        t = cls()
        for g in range(groups):
            users = [await Client.sign_in(session, urls[0], uid(f"g{g}u{i}")) for i in range(members)]
            cid = (await users[0].create_group(f"fault {g}", [u.user_id for u in users[1:]]))["conversation_id"]
            t.groups[cid] = users
            t.clients += users
            for u in users:
                for i, url in enumerate(urls):
                    t.devices.append(Roaming(u, f"d{i}", [url, *(x for x in urls if x != url)]))
        await asyncio.wait_for(asyncio.gather(*(d.synced.wait() for d in t.devices)), 30)
        for cid, users in t.groups.items():
            device = next(d for d in t.devices if d.client is users[0])
            t.senders.append(Sender(device, [cid], rate))
        t.tasks = [asyncio.create_task(s.run(t.stop)) for s in t.senders]
        return t

    async def finish(self, drain_s: float = 90.0, converge_s: float = 60.0) -> Counts:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        await asyncio.gather(*(s.drain(drain_s) for s in self.senders))
        counts = Counts(sent=sum(s.sent for s in self.senders), resent=sum(s.resent for s in self.senders),
                        devices=len(self.devices))
        acked = {cm: (a["conversation_id"], a["seq"]) for s in self.senders for cm, a in s.device.acks.items()}
        counts.acked = len(acked)
        histories: dict[str, list[dict[str, Any]]] = {}
        for cid, users in self.groups.items():
            history = histories[cid] = await full_history(users[0], cid)
            seqs = [m["seq"] for m in history]
            counts.messages += len(history)
            counts.gaps += len(set(range(1, max(seqs, default=0) + 1)) - set(seqs))
            stored = [m["client_msg_id"] for m in history]
            counts.duplicates += len(stored) - len(set(stored))
        where = {(m["conversation_id"], m["seq"]): m["client_msg_id"] for h in histories.values() for m in h}
        counts.lost = sum(1 for cm, key in acked.items() if where.get(key) != cm)
        want = {cid: {m["seq"]: m["message_id"] for m in h} for cid, h in histories.items()}  # cid -> seq -> id
        counts.converged = await self._converge(want, converge_s)
        counts.notes = [self._lacks(d, want) for d in self.devices if not self._holds(d, want)]
        for d in self.devices:
            counts.reordered += d.reordered
            counts.ack_conflicts += d.ack_conflicts
            counts.raw_duplicates += d.duplicates
            counts.reconnects += d.reconnects
        return counts

    def _holds(self, d: Roaming, want: dict[str, dict[int, str]]) -> bool:
        """Whether ``d`` holds every message of every group it is in, the same as history."""
        return all({s: m["message_id"] for s, m in d.seen[cid].items()} == ids
                   for cid, ids in want.items() if d.client in self.groups[cid])

    def _lacks(self, d: Roaming, want: dict[str, dict[int, str]]) -> str:
        """What ``d`` lacks or holds wrongly, per group, and its connection's state."""
        parts = []
        for cid, ids in want.items():
            if d.client in self.groups[cid]:
                missing = sorted(set(ids) - set(d.seen[cid]))
                wrong = sorted(s for s, m in d.seen[cid].items() if ids.get(s) != m["message_id"])
                if missing or wrong:
                    parts.append(f"{cid}: lacks {len(missing)} of {len(ids)} ({spans(missing)}), wrong {wrong}")
        state = "connected" if d.ws is not None and not d.ws.closed else "not connected"
        return (f"{d.client.user_id}/{d.device_id}: {'; '.join(parts)}; {state}, "
                f"{'synced' if d.synced.is_set() else 'not synced'}, {d.reconnects} reconnects, errors {d.errors[-3:]}")

    async def _converge(self, want: dict[str, dict[int, str]], timeout: float) -> int:
        """How many devices hold every message of every group they are in, the same as history."""
        deadline = time.monotonic() + timeout
        while not all(self._holds(d, want) for d in self.devices) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        return sum(1 for d in self.devices if self._holds(d, want))

    async def close(self) -> None:
        self.stop.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*(d.close() for d in self.devices), return_exceptions=True)
