"""Issue 13 item 5: the web client's session lives in an HttpOnly cookie, out of reach of the
page's script, and the gateway accepts that cookie only from the web client's own origin
(CSRF: SameSite=Strict plus an Origin check). Bearer tokens work as PROTOCOL.md says.
"""

from __future__ import annotations

import time
from http.cookies import SimpleCookie

import aiohttp
import pytest

from tests.client import Client, uid
from tests.support import System

EVIL = "https://evil.example.com"


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-cookie"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


def cookies_of(response: aiohttp.ClientResponse) -> dict[str, dict[str, str]]:
    """Each Set-Cookie of a response: name -> its value and attributes (lower-case names)."""
    found = {}
    for header in response.headers.getall("Set-Cookie", []):
        for name, morsel in SimpleCookie(header).items():
            attrs = {k: v for k, v in morsel.items() if v}
            flags = header.lower()
            attrs.update({"httponly": "httponly" in flags, "secure": "; secure" in flags})
            found[name] = {"value": morsel.value, **attrs}
    return found


async def dev_session(session, url: str, user_id: str, origin: str | None = None) -> aiohttp.ClientResponse:
    headers = {} if origin is None else {"Origin": origin}
    async with session.post(f"{url}/v1/dev/session", json={"user_id": user_id}, headers=headers) as r:
        await r.read()
        return r


async def signed_in(session, url: str, user_id: str) -> str:
    """The session cookie's value for ``user_id`` (a sign-in from the web client's origin)."""
    r = await dev_session(session, url, user_id, origin=url)
    assert r.status == 200
    return cookies_of(r)["chat_session"]["value"]


async def test_sign_in_sets_an_httponly_same_site_strict_cookie_and_answers_no_token(system, session):
    url, user = system.url(), uid("ann")
    async with session.post(f"{url}/v1/dev/session", json={"user_id": user}, headers={"Origin": url}) as r:
        assert r.status == 200
        body = await r.json()
        cookie = cookies_of(r)["chat_session"]
    assert body == {"user_id": user, "expires_at": pytest.approx((time.time() + 86_400) * 1000, abs=5000)}
    assert cookie["value"].count(".") == 2 and cookie["value"] not in str(body)  # a JWT, only in the cookie
    assert (cookie["httponly"], cookie["samesite"], cookie["path"], cookie["secure"]) == (True, "Strict", "/", False)
    assert 86_300 <= int(cookie["max-age"]) <= 86_400
    async with session.get(f"{url}/v1/session", headers={"Cookie": f"chat_session={cookie['value']}"}) as r:
        assert (r.status, (await r.json())["user_id"]) == (200, user)


async def test_a_page_served_over_https_gets_a_secure_host_prefixed_cookie(system, session):
    url = system.url()
    r = await dev_session(session, url, uid("ann"), origin=url.replace("http://", "https://"))
    cookie = cookies_of(r)["__Host-chat_session"]
    assert (r.status, cookie["secure"], cookie["httponly"], cookie["path"]) == (200, True, True, "/")


async def test_the_cookie_serves_http_and_the_websocket_from_the_web_clients_origin(system, session):
    url, user = system.url(), uid("ann")
    jar = {"Cookie": f"chat_session={await signed_in(session, url, user)}"}
    async with session.get(f"{url}/v1/conversations", headers=jar) as r:  # same-origin GET: no Origin
        assert r.status == 200
    async with session.post(f"{url}/v1/conversations", headers={**jar, "Origin": url},
                            json={"type": "group", "name": "g", "description": "", "members": []}) as r:
        assert r.status == 201, await r.text()
    ws = await session.ws_connect(f"{url}/v1/ws?device_id=web-1", headers={**jar, "Origin": url})
    assert (await ws.receive_json(timeout=10))["user_id"] == user
    await ws.close()


async def test_the_cookie_is_refused_to_other_origins_and_origin_less_writes(system, session):
    url = system.url()
    jar = {"Cookie": f"chat_session={await signed_in(session, url, uid('ann'))}"}
    group = {"type": "group", "name": "g", "description": "", "members": []}
    refused = [
        ("POST", "/v1/conversations", {}),  # a state-changing request must say where it comes from
        ("POST", "/v1/conversations", {"Origin": EVIL}),
        ("POST", "/v1/conversations", {"Origin": "null"}),
        ("GET", "/v1/conversations", {"Origin": EVIL}),
        ("GET", "/v1/conversations", {"Sec-Fetch-Site": "cross-site"}),
        ("GET", "/v1/conversations", {"Sec-Fetch-Site": "same-site"}),
    ]
    for method, path, headers in refused:
        async with session.request(method, f"{url}{path}", headers={**jar, **headers}, json=group) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "forbidden"), (method, headers)
    for headers in ({}, {"Origin": EVIL}):  # cross-site WebSocket hijacking
        async with session.get(f"{url}/v1/ws?device_id=web-1", headers={**jar, **headers,
                               "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}) as r:
            assert r.status == 403, headers
    for origin in (None, EVIL):  # no other site signs a browser in (login CSRF)
        r = await dev_session(session, url, uid("eve"), origin=origin)
        assert r.status == 403 and not cookies_of(r), origin


async def test_a_token_becomes_a_session_and_sign_out_clears_the_cookie(system, session):
    url = system.url()
    client = await Client.sign_in(session, url, uid("ann"))
    async with session.post(f"{url}/v1/session", json={"token": client.token}, headers={"Origin": url}) as r:
        assert (r.status, (await r.json())["user_id"]) == (200, client.user_id)
        assert cookies_of(r)["chat_session"]["value"] == client.token
    async with session.post(f"{url}/v1/session", json={"token": client.token + "x"}, headers={"Origin": url}) as r:
        assert r.status == 401 and not any(c["value"] for c in cookies_of(r).values())
    async with session.delete(f"{url}/v1/session", headers={"Origin": url,
                              "Cookie": f"chat_session={client.token}"}) as r:
        assert r.status == 204
        cleared = cookies_of(r)
    assert cleared["chat_session"]["value"] == "" and cleared["chat_session"]["max-age"] == "0"
    assert cleared["__Host-chat_session"]["max-age"] == "0"


async def test_bearer_tokens_work_as_before_and_win_over_the_cookie(system, session):
    """PROTOCOL.md's bearer token, header or ?token= on the WebSocket, needs no Origin."""
    url = system.url()
    alice = await Client.sign_in(session, url, uid("alice"))
    bob_cookie = await signed_in(session, url, uid("bob"))
    headers = {"Authorization": f"Bearer {alice.token}", "Cookie": f"chat_session={bob_cookie}", "Origin": EVIL}
    async with session.get(f"{url}/v1/session", headers=headers) as r:
        assert (r.status, (await r.json())["user_id"]) == (200, alice.user_id)
    async with session.post(f"{url}/v1/conversations", headers=headers,
                            json={"type": "group", "name": "g", "description": "", "members": []}) as r:
        assert r.status == 201
    ws = await session.ws_connect(f"{url}/v1/ws?device_id=d1&token={alice.token}")
    assert (await ws.receive_json(timeout=10))["user_id"] == alice.user_id
    await ws.close()
    async with session.get(f"{url}/v1/session") as r:
        assert r.status == 401
