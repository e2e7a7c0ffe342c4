"""FCM HTTP v1: ``POST {endpoint}/v1/projects/{project_id}/messages:send`` with an OAuth 2 access
token of a Google service account (the JWT-bearer grant: an RS256 assertion signed with the
account's key, exchanged at its ``token_uri``; cached until a minute before it expires).

Payload: ``message.token``, ``notification`` {title, body}, ``data`` (string values only),
``android.collapse_key`` and ``apns.headers.apns-collapse-id`` per conversation.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt

from chat.events import PushRequested
from push.providers import PushError, PushHttpRequest, data_fields, json_body

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


class FcmProvider:
    platform = "fcm"

    def __init__(self, account: dict[str, Any], endpoint: str) -> None:
        self.account = account
        self.endpoint = endpoint.rstrip("/")
        self._token: tuple[str, float] | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_file(cls, path: str, endpoint: str) -> "FcmProvider":
        return cls(json.loads(Path(path).read_text()), endpoint)

    def assertion(self, now: int) -> str:
        a = self.account
        claims = {"iss": a["client_email"], "scope": SCOPE, "aud": a["token_uri"], "iat": now, "exp": now + 3600}
        return jwt.encode(claims, a["private_key"], algorithm="RS256", headers={"kid": a.get("private_key_id", "")})

    async def access_token(self, client: httpx.AsyncClient) -> str:
        async with self._lock:
            if self._token is None or self._token[1] <= time.time():
                try:
                    response = await client.post(self.account["token_uri"], data={
                        "grant_type": GRANT, "assertion": self.assertion(int(time.time()))})
                except httpx.HTTPError as exc:
                    raise PushError(f"FCM token exchange failed: {exc}") from exc
                if response.status_code != 200:
                    raise PushError(f"FCM token exchange: HTTP {response.status_code}",
                                    permanent=400 <= response.status_code < 500)
                answer = response.json()
                self._token = (answer["access_token"], time.time() + int(answer.get("expires_in", 3600)) - 60)
            return self._token[0]

    def payload(self, job: PushRequested) -> dict[str, Any]:
        notification = {"title": job.title, **({"body": job.body} if job.body is not None else {})}
        return {"message": {
            "token": job.push_token, "notification": notification, "data": data_fields(job),
            "android": {"collapse_key": job.collapse_key, "priority": "high"},
            "apns": {"headers": {"apns-collapse-id": job.collapse_key[:64]},
                     "payload": {"aps": {"thread-id": job.conversation_id}}},
        }}

    async def request(self, job: PushRequested, client: httpx.AsyncClient) -> PushHttpRequest:
        token = await self.access_token(client)
        url = f"{self.endpoint}/v1/projects/{self.account['project_id']}/messages:send"
        return PushHttpRequest(url, {"Authorization": f"Bearer {token}",
                                     "Content-Type": "application/json; charset=UTF-8"},
                               json_body(self.payload(job)))
