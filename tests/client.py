"""A test client that speaks only PROTOCOL.md, over real HTTP and WebSockets."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable

import aiohttp


class Device:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user_id: str, device_id: str) -> None:
        self.ws = ws
        self.user_id = user_id
        self.device_id = device_id
        self.frames: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.frames.append(msg.json())
                self._arrived.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def send_message(self, conversation_id: str, client_msg_id: str, body: str) -> None:
        await self.send({"type": "send", "conversation_id": conversation_id,
                         "client_msg_id": client_msg_id, "body": body})

    def of_type(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda f: True) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind and pred(f)]

    async def wait_for(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda f: True,
                       count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        async def until() -> list[dict[str, Any]]:
            while len(found := self.of_type(kind, pred)) < count:
                self._arrived.clear()
                await self._arrived.wait()
            return found
        try:
            return await asyncio.wait_for(until(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"{self.user_id}/{self.device_id}: {count} {kind!r} frames not seen in "
                                 f"{timeout}s; got {self.frames[-10:]}") from None

    def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return [f["message"] for f in self.of_type("message", lambda f: f["message"]["conversation_id"] == conversation_id)]

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def uid(name: str) -> str:
    """A user id no other test run uses."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


class Client:
    """One user's HTTP session, able to open several devices."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, user_id: str, token: str) -> None:
        self.session = session
        self.base_url = base_url
        self.user_id = user_id
        self.token = token

    @classmethod
    async def sign_in(cls, session: aiohttp.ClientSession, base_url: str, user_id: str) -> "Client":
        async with session.post(f"{base_url}/v1/dev/token", json={"user_id": user_id}) as r:
            assert r.status == 200, await r.text()
            return cls(session, base_url, user_id, (await r.json())["token"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.session.request(method, f"{self.base_url}{path}", headers=self.headers, **kwargs) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, body

    async def device(self, device_id: str, base_url: str | None = None) -> Device:
        url = (base_url or self.base_url).replace("http", "ws", 1)
        ws = await self.session.ws_connect(f"{url}/v1/ws?device_id={device_id}", headers=self.headers)
        device = Device(ws, self.user_id, device_id)
        await device.wait_for("hello")
        return device

    async def create_group(self, name: str, members: list[str], description: str = "") -> dict[str, Any]:
        status, body = await self.call("POST", "/v1/conversations", json={
            "type": "group", "name": name, "description": description, "members": members})
        assert status == 201, body
        return body


# Appended for the e2e tier's ordering, offline, retention and fan-out tests.

import time  # noqa: E402  (imports of this appended block, kept with it)


class TimedDevice(Device):
    """A ``Device`` that also records when each frame arrived (``time.monotonic()``)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, user_id: str, device_id: str) -> None:
        self.arrived_at: list[float] = []  # parallel to ``frames``
        super().__init__(ws, user_id, device_id)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.arrived_at.append(time.monotonic())
                self.frames.append(msg.json())
                self._arrived.set()


async def timed_device(client: Client, device_id: str, base_url: str | None = None) -> TimedDevice:
    """``client.device(...)``, as a ``TimedDevice``."""
    url = (base_url or client.base_url).replace("http", "ws", 1)
    ws = await client.session.ws_connect(f"{url}/v1/ws?device_id={device_id}", headers=client.headers)
    device = TimedDevice(ws, client.user_id, device_id)
    await device.wait_for("hello")
    return device


def first_seen(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages with duplicates dropped by ``(conversation_id, seq)``, first arrival kept, in arrival order."""
    seen: set[tuple[str, int]] = set()
    unique = []
    for m in messages:
        key = (m["conversation_id"], m["seq"])
        if key not in seen:
            seen.add(key)
            unique.append(m)
    return unique


def contiguous_cursor(messages: list[dict[str, Any]]) -> int:
    """The highest seq up to which every seq from 1 was seen (a client's sync cursor)."""
    seqs = {m["seq"] for m in messages}
    cursor = 0
    while cursor + 1 in seqs:
        cursor += 1
    return cursor


async def eventually(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check()`` until true; ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout}s: {what}")
        await asyncio.sleep(interval)


async def full_history(client: Client, conversation_id: str, page: int = 200) -> list[dict[str, Any]]:
    """Every readable message, walking ``GET …/messages`` back with ``before_seq``; ascending seq."""
    pages: list[list[dict[str, Any]]] = []
    before = ""
    while True:
        status, body = await client.call("GET", f"/v1/conversations/{conversation_id}/messages?limit={page}{before}")
        assert status == 200, body
        pages.append(body["messages"])
        if not body["has_more"]:
            break
        assert body["messages"], f"has_more with an empty page: {body}"
        before = f"&before_seq={body['messages'][0]['seq']}"
    return [m for p in reversed(pages) for m in p]


async def sign_in_users(session: aiohttp.ClientSession, base_url: str, *names: str) -> list[Client]:
    """Fresh users (``uid`` of each name), signed in."""
    return [await Client.sign_in(session, base_url, uid(n)) for n in names]


async def page(client: Client, cid: str, query: str = "") -> tuple[list[int], bool]:
    """One page of ``GET …/messages`` (``query`` as given): its seqs and ``has_more``."""
    status, body = await client.call("GET", f"/v1/conversations/{cid}/messages{query}")
    assert status == 200, body
    return [m["seq"] for m in body["messages"]], body["has_more"]


async def sync(device: Device, cursors: dict[str, int]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Send a sync; the messages it replayed and the synced cursors."""
    start = len(device.frames)
    count = len(device.of_type("synced")) + 1
    await device.send({"type": "sync", "cursors": cursors})
    synced = (await device.wait_for("synced", count=count))[-1]
    end = device.frames.index(synced, start)
    return [f["message"] for f in device.frames[start:end] if f["type"] == "message"], synced["cursors"]
