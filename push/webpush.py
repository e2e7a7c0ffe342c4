"""Web Push (RFC 8030) with message encryption (RFC 8291, ``aes128gcm``) and VAPID (RFC 8292),
through ``pywebpush``'s encoder and ``py_vapid``: the device's ``push_token`` is the browser's
subscription JSON ``{"endpoint", "keys": {"p256dh", "auth"}}``. ``Topic`` (RFC 8030's collapse
key, at most 32 URL-safe characters) is derived from the conversation.
"""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import httpx
import orjson
from py_vapid import Vapid
from pywebpush import WebPusher

from chat.events import PushRequested
from push.egress import EgressPolicy
from push.providers import PushError, PushHttpRequest, data_fields, json_body

TTL_S = 86_400


class WebPushProvider:
    platform = "webpush"

    def __init__(self, vapid_key_file: str, subject: str, policy: EgressPolicy) -> None:
        self.vapid = Vapid.from_file(vapid_key_file)
        self.subject = subject
        self.policy = policy  # the endpoint is the browser's choice: the egress guard applies

    async def request(self, job: PushRequested, client: httpx.AsyncClient) -> PushHttpRequest:
        try:
            subscription = orjson.loads(job.push_token)
            endpoint = subscription["endpoint"]
            encrypted = WebPusher(subscription).encode(
                json_body({**data_fields(job), "title": job.title, "body": job.body}), "aes128gcm")["body"]
        except (ValueError, KeyError, TypeError) as exc:
            raise PushError(f"bad web push subscription: {exc}", permanent=True) from exc
        if not isinstance(endpoint, str):
            raise PushError("bad web push subscription: endpoint is not a string", permanent=True)
        self.policy.check_url(endpoint)
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(endpoint))
        headers = dict(self.vapid.sign({"sub": self.subject, "aud": origin, "exp": int(time.time()) + 12 * 3600}))
        headers.update({"Content-Encoding": "aes128gcm", "Content-Type": "application/octet-stream",
                        "TTL": str(TTL_S), "Urgency": "high",
                        "Topic": hashlib.sha256(job.collapse_key.encode()).hexdigest()[:32]})
        return PushHttpRequest(endpoint, headers, encrypted, client_chosen=True)
