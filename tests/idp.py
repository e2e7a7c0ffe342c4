"""A local stand-in for an OpenID Connect provider's public side (no request leaves the
machine): an aiohttp server on a free loopback port, in a thread of its own so that it answers
while a test blocks, serving ``/.well-known/openid-configuration`` and ``/jwks.json`` with
keys the test generates, and signing tokens with them. It counts the requests it gets.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from infra.services import free_port


class IdentityProvider:
    def __init__(self, audience: str = "chat") -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = audience
        self.private: dict[str, tuple[Any, str]] = {}  # kid -> (private key, alg)
        self.published: list[str] = []  # the kids the JWKS serves
        self.requests: Counter[str] = Counter()
        self.fault: str | None = None  # "down": the JWKS answers 503; "issuer": discovery names another
        self.delay_s = 0.0  # how long the JWKS takes to answer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def new_key(self, alg: str, *, publish: bool = True) -> str:
        """A fresh RS256 (RSA 2048) or ES256 (P-256) key; its kid."""
        kid = f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" \
            else ec.generate_private_key(ec.SECP256R1())
        self.private[kid] = (key, alg)
        if publish:
            self.published.append(kid)
        return kid

    def public_pem(self, kid: str) -> bytes:
        return self.private[kid][0].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def jwk(self, kid: str) -> dict[str, Any]:
        key, alg = self.private[kid]
        codec = RSAAlgorithm if alg == "RS256" else ECAlgorithm
        return {**codec.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": alg, "use": "sig"}

    def token(self, kid: str, sub: str, *, aud: str | None = None, iss: str | None = None,
              expires_in: float = 300, **claims: Any) -> str:
        """A token signed with the key ``kid`` (published or not)."""
        key, alg = self.private[kid]
        now = int(time.time())
        payload = {"sub": sub, "iss": iss or self.issuer, "aud": aud or self.audience,
                   "iat": now, "exp": int(now + expires_in), **claims}
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    # The server
    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests["discovery"] += 1
        issuer = "https://impostor.example.com" if self.fault == "issuer" else self.issuer
        return web.json_response({"issuer": issuer, "jwks_uri": f"{self.issuer}/jwks.json",
                                  "id_token_signing_alg_values_supported": ["RS256", "ES256"]})

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests["jwks"] += 1
        await asyncio.sleep(self.delay_s)
        if self.fault == "down":
            return web.json_response({"error": "down"}, status=503)
        return web.json_response({"keys": [self.jwk(kid) for kid in list(self.published)]})

    def start(self) -> "IdentityProvider":
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="idp", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the identity provider did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks.json", self._jwks)
        self._runner = web.AppRunner(app)
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
