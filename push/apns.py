"""APNs over HTTP/2: ``POST {endpoint}/3/device/{token}`` with token-based auth, a bearer JWT
(ES256, ``kid`` the key id, ``iss`` the team id) refreshed every 50 minutes (Apple accepts one
between 20 and 60 minutes old), and the headers ``apns-topic`` (bundle id), ``apns-push-type:
alert``, ``apns-priority: 10``, ``apns-expiration`` and ``apns-collapse-id`` (the conversation).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from chat.events import PushRequested
from push.providers import PushHttpRequest, data_fields, json_body

if TYPE_CHECKING:
    from chat.settings import Settings

TOKEN_LIFETIME_S = 50 * 60
EXPIRATION_S = 86_400


class ApnsProvider:
    platform = "apns"

    def __init__(self, key_pem: str, key_id: str, team_id: str, topic: str, endpoint: str) -> None:
        self.key_pem, self.key_id, self.team_id, self.topic = key_pem, key_id, team_id, topic
        self.endpoint = endpoint.rstrip("/")
        self._token: tuple[str, float] | None = None

    @classmethod
    def from_settings(cls, s: Settings) -> "ApnsProvider":
        return cls(Path(s.apns_key_file).read_text(), s.apns_key_id, s.apns_team_id, s.apns_topic, s.apns_endpoint)

    def bearer(self) -> str:
        now = time.time()
        if self._token is None or now - self._token[1] > TOKEN_LIFETIME_S:
            token = jwt.encode({"iss": self.team_id, "iat": int(now)}, self.key_pem, algorithm="ES256",
                               headers={"kid": self.key_id})
            self._token = (token, now)
        return self._token[0]

    def payload(self, job: PushRequested) -> dict[str, Any]:
        alert = {"title": job.title, **({"body": job.body} if job.body is not None else {})}
        return {"aps": {"alert": alert, "sound": "default", "thread-id": job.conversation_id,
                        "mutable-content": 1}, **data_fields(job)}

    async def request(self, job: PushRequested, client: httpx.AsyncClient) -> PushHttpRequest:
        headers = {"authorization": f"bearer {self.bearer()}", "apns-topic": self.topic,
                   "apns-push-type": "alert", "apns-priority": "10",
                   "apns-expiration": str(int(time.time()) + EXPIRATION_S),
                   "apns-collapse-id": job.collapse_key[:64], "content-type": "application/json"}
        return PushHttpRequest(f"{self.endpoint}/3/device/{job.push_token}", headers, json_body(self.payload(job)))
