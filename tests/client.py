"""A test client that speaks only PROTOCOL.md, over real HTTP and WebSockets."""

from __future__ import annotations

import asyncio
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
