"""What every push provider is: a builder of the provider's real HTTP request for one
notification, with its payload format and auth headers. One HTTP client sends them all
(httpx, HTTP/2 where the endpoint speaks it over TLS, as APNs requires; plain HTTP/1.1 to the
local test servers), and one rule classifies the answers.

``providers_for(settings)`` gives the providers this deployment is configured for: ``webhook``
always, FCM, APNs and Web Push when their credentials are set. Endpoints are configuration,
so nothing in the tests leaves the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import orjson

from chat.errors import ChatError
from chat.events import PushRequested

if TYPE_CHECKING:
    from chat.settings import Settings

RETRYABLE = {408, 425, 429}
GONE = {404, 410}


class PushError(ChatError):
    """A notification was not accepted by its provider."""

    def __init__(self, message: str, *, permanent: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status = status

    @property
    def token_gone(self) -> bool:
        """The provider says this device's token is no longer valid (APNs 410, FCM and Web Push
        404/410): the registration is removed, so no later message tries it again."""
        return self.status in GONE


@dataclass(frozen=True)
class PushHttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"
    meta: dict[str, Any] = field(default_factory=dict)
    # The URL came from a client (a webhook, a Web Push endpoint): sent only through the
    # egress guard (push/egress.py), never through the client for configured endpoints.
    client_chosen: bool = False


def json_body(value: Any) -> bytes:
    return orjson.dumps(value)


def data_fields(job: PushRequested) -> dict[str, str]:
    """The ids every payload carries, so the app can fetch the message itself."""
    return {"type": "message", "conversation_id": job.conversation_id, "seq": str(job.seq),
            "message_id": job.message_id}


class Provider(Protocol):
    platform: str

    async def request(self, job: PushRequested, client: httpx.AsyncClient) -> PushHttpRequest:
        """The provider's HTTP request for ``job`` (may fetch or refresh an auth token)."""


async def send(client: httpx.AsyncClient, request: PushHttpRequest) -> None:
    """Send one request. 2xx: done. 408/425/429/5xx and network errors: ``PushError`` to retry;
    any other answer (a bad or unregistered token, bad auth): a permanent ``PushError``."""
    try:
        response = await client.request(request.method, request.url, headers=request.headers,
                                        content=request.body)
    except httpx.HTTPError as exc:
        raise PushError(f"{type(exc).__name__}: {exc}") from exc
    if 200 <= response.status_code < 300:
        return
    detail = f"HTTP {response.status_code}: {response.text[:200]}"
    raise PushError(detail, permanent=response.status_code < 500 and response.status_code not in RETRYABLE,
                    status=response.status_code)


def providers_for(settings: Settings) -> dict[str, Provider]:
    from push.egress import EgressPolicy
    from push.webhook import WebhookProvider

    policy = EgressPolicy.from_settings(settings)
    providers: dict[str, Provider] = {"webhook": WebhookProvider(policy)}
    if settings.fcm_credentials_file:
        from push.fcm import FcmProvider

        providers["fcm"] = FcmProvider.from_file(settings.fcm_credentials_file, settings.fcm_endpoint)
    if settings.apns_key_file:
        from push.apns import ApnsProvider

        providers["apns"] = ApnsProvider.from_settings(settings)
    if settings.webpush_vapid_key_file:
        from push.webpush import WebPushProvider

        providers["webpush"] = WebPushProvider(settings.webpush_vapid_key_file, settings.webpush_vapid_subject,
                                               policy)
    return providers
