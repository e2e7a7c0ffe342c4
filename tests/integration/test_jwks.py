"""Issue 13 item 9: tokens of an identity provider, verified with the keys its JWKS publishes
(found by OIDC discovery), beside the shared secret. A real gateway process against a local
provider that the test serves (tests/idp.py): RS256 and ES256 tokens sign in over HTTP and the
WebSocket; a wrong issuer or audience, an expired token, ``alg: none``, an HS256 token keyed
with the provider's public key and an unknown key are refused 401; a rotated key is picked up
by a refetch, which made-up key ids cannot repeat at will; and a key set counts as a real
secret for the loopback guard.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import urllib.request

import aiohttp
import pytest

from chat.errors import Unavailable
from chat.settings import DEV_JWT_SECRET, Settings
from gateway.auth import token_claims
from gateway.jwks import KeySet
from tests.client import uid
from tests.idp import IdentityProvider
from tests.support import System

REFETCH_S = 2.0


def gateway_answers(url: str, gateway, timeout: float = 60.0) -> None:
    """Waits until the gateway serves (``GET /v1``): these tests need no stream worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not gateway.running:
            raise RuntimeError(f"the gateway exited:\n{gateway.log_tail(40)}")
        try:
            with urllib.request.urlopen(f"{url}/v1", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the gateway did not answer:\n{gateway.log_tail(40)}")


@pytest.fixture(scope="module")
def idp():
    provider = IdentityProvider().start()
    provider.rs = provider.new_key("RS256")  # type: ignore[attr-defined]
    provider.es = provider.new_key("ES256")  # type: ignore[attr-defined]
    yield provider
    provider.stop()


def start(stack, base_dir, idp: IdentityProvider, **env: str) -> tuple[System, str]:
    system = System(stack, base_dir, CHAT_OIDC_ISSUER=idp.issuer, CHAT_JWT_AUDIENCE=idp.audience,
                    CHAT_JWKS_REFETCH_S=str(REFETCH_S), **env)
    gateway = system.start_gateway(wait=False)
    url = f"http://127.0.0.1:{gateway.port_number}"  # type: ignore[attr-defined]
    try:
        gateway_answers(url, gateway)
    except Exception:
        system.stop()
        raise
    return system, url


@pytest.fixture(scope="module")
def gateway(stack, tmp_path_factory, idp):
    system, url = start(stack, tmp_path_factory.mktemp("jwks"), idp)
    yield url
    system.stop()


async def status_of(session: aiohttp.ClientSession, url: str, token: str) -> tuple[int, dict]:
    async with session.get(f"{url}/v1/session", headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status, await r.json()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict, claims: dict, key: bytes | None) -> str:
    """A token built by hand: HS256 with ``key`` as the HMAC secret, or unsigned for None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key is not None else b""
    return f"{signing_input}.{b64(signature)}"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_provider_tokens_sign_in_over_http_and_the_websocket(gateway, idp, session, alg):
    user = uid("ann")
    token = idp.token(idp.rs if alg == "RS256" else idp.es, user)
    assert await status_of(session, gateway, token) == (200, {"user_id": user, "expires_at": pytest.approx(
        (time.time() + 300) * 1000, abs=5000)})
    async with session.get(f"{gateway}/v1/conversations", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200 and (await r.json()) == {"conversations": []}
    ws = await session.ws_connect(f"{gateway}/v1/ws?device_id=d1", headers={"Authorization": f"Bearer {token}"})
    hello = await ws.receive_json(timeout=10)
    assert (hello["type"], hello["user_id"]) == ("hello", user)
    await ws.close()
    ws = await session.ws_connect(f"{gateway}/v1/ws?device_id=d2&token={token}")  # browsers' form
    assert (await ws.receive_json(timeout=10))["user_id"] == user
    await ws.close()


def refused_tokens(idp: IdentityProvider) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": "mallory", "iss": idp.issuer, "aud": idp.audience, "iat": now, "exp": now + 300}
    stranger = IdentityProvider()  # keys this provider never published
    stranger.issuer = idp.issuer
    return {
        "wrong issuer": idp.token(idp.rs, "mallory", iss="https://evil.example.com"),
        "wrong audience": idp.token(idp.es, "mallory", aud="another-app"),
        "expired": idp.token(idp.rs, "mallory", expires_in=-120),
        "alg none": forged({"alg": "none", "typ": "JWT", "kid": idp.rs}, claims, None),
        "HS256 keyed with the public key": forged({"alg": "HS256", "typ": "JWT", "kid": idp.rs}, claims,
                                                  idp.public_pem(idp.rs)),
        "HS256 keyed with the public JWK": forged({"alg": "HS256", "typ": "JWT", "kid": idp.rs}, claims,
                                                  json.dumps(idp.jwk(idp.rs)).encode()),
        "unknown kid": stranger.token(stranger.new_key("RS256"), "mallory"),
        "RS256 header on the ES256 key": forged({"alg": "RS256", "typ": "JWT", "kid": idp.es}, claims, b"x"),
        "subject outside the alphabet": idp.token(idp.rs, "Mallory"),
        "alg not a string": forged({"alg": ["RS256"], "typ": "JWT", "kid": idp.rs}, claims, b"x"),
        "no subject": idp.token(idp.rs, None),
    }


async def test_forged_foreign_and_expired_tokens_are_refused_401(gateway, idp, session):
    for name, token in refused_tokens(idp).items():
        status, body = await status_of(session, gateway, token)
        assert (status, body["error"]["code"]) == (401, "unauthorized"), (name, body)
        async with session.get(f"{gateway}/v1/ws?device_id=d1", headers={"Authorization": f"Bearer {token}"}) as r:
            assert r.status == 401, name  # refused before the upgrade


async def test_a_rotated_key_is_fetched_and_made_up_key_ids_fetch_at_most_once_per_interval(gateway, idp, session):
    await asyncio.sleep(REFETCH_S)
    fetched = idp.requests["jwks"]
    new = idp.new_key("ES256", publish=False)
    assert (await status_of(session, gateway, idp.token(new, "ann")))[0] == 401  # not published yet: a fetch
    assert idp.requests["jwks"] == fetched + 1
    old, idp.published = list(idp.published), [new]  # the provider rotates: only the new key
    for _ in range(20):  # within the interval: refused without asking the provider again
        assert (await status_of(session, gateway, idp.token(new, "ann")))[0] == 401
    assert idp.requests["jwks"] == fetched + 1
    await asyncio.sleep(REFETCH_S)
    try:
        assert await status_of(session, gateway, idp.token(new, "ann")) == (200, {"user_id": "ann", "expires_at": pytest.approx(
            (time.time() + 300) * 1000, abs=5000)})
        assert idp.requests["jwks"] == fetched + 2
        assert (await status_of(session, gateway, idp.token(idp.rs, "ann")))[0] == 401  # retired with its set
    finally:
        idp.published = old + [new]


async def test_a_key_set_is_a_real_secret_for_a_gateway_reachable_from_other_machines(stack, tmp_path, idp, session):
    """The loopback guard (item 2) lets a gateway on 0.0.0.0 start with a key set and no
    CHAT_JWT_SECRET; the public development secret then signs nobody in there."""
    system, url = start(stack, tmp_path, idp, CHAT_HOST="0.0.0.0")
    try:
        assert (await status_of(session, url, idp.token(idp.rs, "ann")))[0] == 200
        now = int(time.time())
        dev = forged({"alg": "HS256", "typ": "JWT"}, {"sub": "root", "iat": now, "exp": now + 60},
                     DEV_JWT_SECRET.encode())
        assert (await status_of(session, url, dev))[0] == 401
        async with session.post(f"{url}/v1/dev/token", json={"user_id": "root"}) as r:
            assert r.status == 404
        assert "refusing to start" not in system.gateways[0].log_tail(40)
    finally:
        system.stop()


async def test_the_key_set_checks_the_discovered_issuer_keeps_its_keys_and_refreshes_without_a_stall(idp):
    """A failed fetch (provider down, or a discovery document naming another issuer) keeps the
    keys held; a stale set is refreshed behind a token whose key is known, not before it."""
    settings = Settings(oidc_issuer=idp.issuer, jwt_audience=idp.audience, jwks_refetch_s=0, jwks_cache_s=0)
    keys = KeySet(settings)
    await keys.open()
    token = idp.token(idp.es, "ann")
    try:
        assert set(keys.keys) == set(idp.published) and keys.error is None
        for fault, said in (("down", "answered 503"), ("issuer", "names issuer 'https://impostor.example.com'")):
            idp.fault = fault
            await keys.refresh()
            assert said in keys.error and set(keys.keys) == set(idp.published), fault
            assert token_claims(settings, token, keys)[0] == "ann"
        idp.fault, idp.delay_s = None, 1.0
        started = time.monotonic()
        await keys.ensure(idp.es)  # known, the set stale: verify now, refresh behind
        assert time.monotonic() - started < 0.5
        await keys.ensure("unknown-kid")  # unknown: wait for the fetch
        assert time.monotonic() - started >= 1.0 and keys.error is None
    finally:
        idp.fault, idp.delay_s = None, 0.0
        await keys.close()


async def test_a_provider_never_reached_answers_unavailable_not_unauthorized(idp):
    from infra.services import free_port

    settings = Settings(oidc_issuer=f"http://127.0.0.1:{free_port()}", jwt_audience="chat", jwks_timeout_s=1)
    keys = KeySet(settings)
    await keys.open()
    try:
        assert not keys.keys and "failed" in keys.error
        with pytest.raises(Unavailable):
            token_claims(settings, idp.token(idp.rs, "ann", iss=settings.oidc_issuer), keys)
    finally:
        await keys.close()
