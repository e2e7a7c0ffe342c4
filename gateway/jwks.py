"""An identity provider's signing keys: its JWKS, found at ``CHAT_JWKS_URL`` or by OIDC
discovery (``<CHAT_OIDC_ISSUER>/.well-known/openid-configuration`` -> ``jwks_uri``).

Rules it keeps:

- Fetches never block the event loop (aiohttp), and at most one runs at a time.
- The set is kept ``jwks_cache_s``; past that, a token whose key is known is still verified at
  once while the set is refetched in the background (rotation without a stall).
- A token naming a key id the set lacks refetches it (the provider rotated), but a fetch starts
  at most once per ``jwks_refetch_s`` whatever the tokens say, so made-up key ids cannot turn
  the gateway into a flood of requests to the provider.
- A failed fetch keeps the keys already held; only keys usable for the configured public-key
  algorithms are held (an ``oct`` key in the set is never a verification key).
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from chat.settings import Settings, is_trusted_url

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
MAX_DOCUMENT_BYTES = 1_048_576


class KeySetError(Exception):
    """The provider's discovery document or key set could not be had or used."""


class KeySet:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.algorithms = set(settings.jwks_algorithm_list)
        self.keys: dict[str | None, PyJWK] = {}
        self.fetches = 0  # attempts, for tests and logs
        self.error: str | None = None  # why the last attempt failed, None after a success
        self._jwks_uri = settings.jwks_url or ""
        self._tried_at = float("-inf")  # time.monotonic() of the last attempt
        self._loaded_at = float("-inf")  # ... and of the last success
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Starts the HTTP client and loads the set once (a failure is logged, not fatal:
        the provider may come up after the gateway)."""
        timeout = aiohttp.ClientTimeout(total=self.settings.jwks_timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout)
        await self.refresh()

    async def close(self) -> None:
        if self._background is not None:
            self._background.cancel()
        if self._session is not None:
            await self._session.close()

    def key(self, kid: str | None) -> PyJWK | None:
        """The key a token names; a token without ``kid`` gets the set's only key, if it has one."""
        if kid is None and len(self.keys) == 1:
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    async def ensure(self, kid: str | None) -> None:
        """Fetches the set if the token's key is missing or the set is stale, within the rate limit."""
        if time.monotonic() - self._tried_at < self.settings.jwks_refetch_s:
            return
        if self.key(kid) is None:
            await self.refresh()
        elif time.monotonic() - self._loaded_at >= self.settings.jwks_cache_s:
            if self._background is None or self._background.done():
                self._background = asyncio.create_task(self.refresh())

    async def refresh(self) -> None:
        """One fetch of the set (callers waiting meanwhile share it); failures are kept in ``error``."""
        started = time.monotonic()
        async with self._lock:
            if self._tried_at >= started:
                return  # another caller fetched while this one waited
            self._tried_at = time.monotonic()
            self.fetches += 1
            try:
                keys = await self._fetch_keys()
            except KeySetError as exc:
                self.error = str(exc)
                log.warning("identity provider key set: %s", exc)
                return
            self.keys, self.error, self._loaded_at = keys, None, time.monotonic()

    async def _fetch_keys(self) -> dict[str | None, PyJWK]:
        if not self._jwks_uri:
            self._jwks_uri = await self._discover()
        try:
            document = await self._get_json(self._jwks_uri)
        except KeySetError:
            self._jwks_uri = self.settings.jwks_url  # discover again next time: it may have moved
            raise
        return self._usable_keys(document)

    async def _discover(self) -> str:
        """``jwks_uri`` of the provider's discovery document, whose ``issuer`` must be the one
        configured (OpenID Connect Discovery 1.0, section 4.3)."""
        issuer = self.settings.oidc_issuer
        document = await self._get_json(issuer.rstrip("/") + DISCOVERY_PATH)
        if document.get("issuer") != issuer:
            raise KeySetError(f"the discovery document names issuer {document.get('issuer')!r}, not {issuer!r}")
        uri = document.get("jwks_uri")
        if not isinstance(uri, str) or not is_trusted_url(uri):
            raise KeySetError(f"the discovery document's jwks_uri {uri!r} is not an https URL")
        return uri

    async def _get_json(self, url: str) -> dict:
        assert self._session is not None, "KeySet.open() first"
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise KeySetError(f"GET {url} answered {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise KeySetError(f"GET {url} failed: {exc!r}") from exc
        if len(body) > MAX_DOCUMENT_BYTES:
            raise KeySetError(f"GET {url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise KeySetError(f"GET {url} answered no JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise KeySetError(f"GET {url} answered no JSON object")
        return document

    def _usable_keys(self, document: dict) -> dict[str | None, PyJWK]:
        """The set's signature keys for the configured algorithms, by ``kid``."""
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise KeySetError("the key set has no keys list")
        keys: dict[str | None, PyJWK] = {}
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK(entry)
            except PyJWTError:
                continue  # a key type or curve this gateway does not take
            if key.algorithm_name in self.algorithms:
                keys[entry.get("kid")] = key
        if not keys:
            raise KeySetError(f"the key set holds no key for {sorted(self.algorithms)}")
        return keys
