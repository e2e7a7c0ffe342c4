"""Local stand-ins for the push providers (no request leaves the machine): one aiohttp server
that speaks enough of FCM HTTP v1 (with its OAuth token exchange), APNs, Web Push and webhooks
to check each request's format and auth, and records every request it gets.

Webhook paths choose a behaviour: ``/hook/flaky-*`` answers 503 to the first two attempts of a
notification and 200 after; ``/hook/down-*`` always 500; ``/hook/gone-*`` 410; others 200.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ACCESS_TOKEN = "ya29.local-test-token"


def _pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@dataclass
class Record:
    kind: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    claims: dict[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class PushEndpoints:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.records: list[Record] = []
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.apns_key = ec.generate_private_key(ec.SECP256R1())
        self._attempts: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None

    def service_account(self) -> dict[str, str]:
        return {"type": "service_account", "project_id": "chat-test", "private_key_id": "k1",
                "private_key": _pem(self.rsa), "client_email": "push@chat-test.iam.gserviceaccount.com",
                "token_uri": f"{self.base_url}/oauth2/token"}

    def apns_p8(self) -> str:
        return _pem(self.apns_key)

    async def start(self) -> "PushEndpoints":
        app = web.Application()
        app.router.add_post("/oauth2/token", self.token)
        app.router.add_post("/v1/projects/{project}/messages:send", self.fcm)
        app.router.add_post("/3/device/{token}", self.apns)
        app.router.add_post("/wp/{id}", self.webpush)
        app.router.add_post("/hook/{name}", self.webhook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, kind: str, request: web.Request, status: int, claims: dict | None = None) -> web.Response:
        body = await request.read()
        self.records.append(Record(kind, request.path, dict(request.headers), body, time.monotonic(), status,
                                   claims or {}))
        return web.json_response({"status": status}, status=status)

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        claims = jwt.decode(form["assertion"], self.rsa.public_key(), algorithms=["RS256"],
                            audience=f"{self.base_url}/oauth2/token")
        assert claims["scope"] == "https://www.googleapis.com/auth/firebase.messaging"
        self.records.append(Record("fcm-token", request.path, dict(request.headers), b"", time.monotonic(), 200, claims))
        return web.json_response({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})

    async def fcm(self, request: web.Request) -> web.Response:
        ok = request.headers.get("Authorization") == f"Bearer {ACCESS_TOKEN}"
        return await self._record("fcm", request, 200 if ok else 401)

    async def apns(self, request: web.Request) -> web.Response:
        auth = request.headers.get("authorization", "")
        try:
            claims = jwt.decode(auth.removeprefix("bearer "), self.apns_key.public_key(), algorithms=["ES256"])
            claims["kid"] = jwt.get_unverified_header(auth.removeprefix("bearer "))["kid"]
            status = 200
        except jwt.PyJWTError:
            claims, status = {}, 403
        return await self._record("apns", request, status, claims)

    async def webpush(self, request: web.Request) -> web.Response:
        return await self._record("webpush", request, 201)

    async def webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        key = request.headers.get("Idempotency-Key", "")
        self._attempts[key] += 1
        status = 200
        if name.startswith("flaky") and self._attempts[key] <= 2:
            status = 503
        elif name.startswith("down"):
            status = 500
        elif name.startswith("gone"):
            status = 410
        return await self._record("webhook", request, status)

    def of(self, kind: str, path_part: str = "") -> list[Record]:
        return [r for r in self.records if r.kind == kind and path_part in r.path]

    async def wait(self, kind: str, path_part: str = "", count: int = 1, timeout: float = 20.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while len(self.of(kind, path_part)) < count:
            assert time.monotonic() < deadline, f"{count} {kind} requests to {path_part!r} not seen: {self.records}"
            await asyncio.sleep(0.05)
        return self.of(kind, path_part)


def webpush_subscription(endpoint: str) -> tuple[dict[str, Any], Any, bytes]:
    """A browser's subscription: (JSON, its private key, its auth secret) to decrypt pushes with."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    auth = b"0123456789abcdef"
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    return {"endpoint": endpoint, "keys": {"p256dh": b64(public), "auth": b64(auth)}}, key, auth
