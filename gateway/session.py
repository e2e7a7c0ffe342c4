"""The web client's session: its token kept in an ``HttpOnly`` cookie, out of reach of script.

- ``POST /v1/session`` with ``{"token": ...}`` (or ``Authorization: Bearer``): any token the
  gateway accepts (an identity provider's, or the shared secret's) becomes the session cookie;
  ``200 {"user_id", "expires_at"}``. The answer never holds the token.
- ``POST /v1/dev/session {"user_id"}``: development sign-in straight into the cookie, so the
  web client never holds a token at all (404 where development sign-in is off).
- ``GET /v1/session``: ``{"user_id", "expires_at"}`` of the request's credentials; 401 without.
- ``DELETE /v1/session``: clears the cookie; ``204``.

The cookie is ``HttpOnly; SameSite=Strict; Path=/``, and ``Secure`` (named ``__Host-...``)
when the page came over https; it lives as long as its token. Signing in needs an ``Origin``
of the web client (``gateway.auth.check_origin``), so no other site can sign a browser in.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from chat.errors import BadRequest, NotFound, Unauthorized
from chat.identity import check_user_id
from chat.settings import Settings
from gateway.auth import COOKIE, KEYS, SECURE_COOKIE, bearer, check_origin, issue_token, request_token, token_claims
from gateway.context import SETTINGS
from gateway.http import body_of

routes = web.RouteTableDef()
MAX_COOKIE_TOKEN = 3_800  # browsers keep cookies of up to 4,096 bytes, name and attributes included


@routes.post("/v1/session")
async def sign_in(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    check_origin(settings, request)
    token = bearer(request) or (await body_of(request)).get("token")
    if not isinstance(token, str) or not token:
        raise Unauthorized('missing token: send {"token": "<JWT>"} or Authorization: Bearer')
    return _signed_in(settings, request, token)


@routes.post("/v1/dev/session")
async def dev_sign_in(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    if not settings.dev_sign_in:
        raise NotFound("development sign-in is off")
    check_origin(settings, request)
    user_id = check_user_id((await body_of(request)).get("user_id"))
    return _signed_in(settings, request, issue_token(settings, user_id))


@routes.get("/v1/session")
async def who(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    user_id, claims = token_claims(settings, request_token(settings, request), request.app.get(KEYS))
    return _json({"user_id": user_id, "expires_at": int(claims["exp"]) * 1000})


@routes.delete("/v1/session")
async def sign_out(request: web.Request) -> web.Response:
    """Clears the cookie in this browser. The token itself stays valid until it expires."""
    settings = request.app[SETTINGS]
    if request.headers.get("Origin") is not None:
        check_origin(settings, request)
    response = web.Response(status=204)
    _clear(response, keep=None)
    return response


def _signed_in(settings: Settings, request: web.Request, token: str) -> web.Response:
    user_id, claims = token_claims(settings, token, request.app.get(KEYS))
    if len(token) > MAX_COOKIE_TOKEN:
        raise BadRequest(f"the token is longer than {MAX_COOKIE_TOKEN} characters, too long for a cookie")
    max_age = int(claims["exp"] - time.time())
    if max_age <= 0:
        raise Unauthorized("invalid token: it expires now")
    secure = _secure(settings, request)
    name = SECURE_COOKIE if secure else COOKIE
    response = _json({"user_id": user_id, "expires_at": int(claims["exp"]) * 1000})
    response.set_cookie(name, token, max_age=max_age, path="/", secure=secure, httponly=True, samesite="Strict")
    _clear(response, keep=name)
    return response


def _secure(settings: Settings, request: web.Request) -> bool:
    """``CHAT_COOKIE_SECURE`` if set; else whether the page is https: the request's scheme, or
    its Origin's (a TLS proxy in front of the gateway forwards plain http)."""
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.secure or request.headers.get("Origin", "").startswith("https://")


def _clear(response: web.Response, *, keep: str | None) -> None:
    for name in (COOKIE, SECURE_COOKIE):
        if name != keep:
            response.del_cookie(name, path="/", secure=name == SECURE_COOKIE, httponly=True, samesite="Strict")


def _json(data: dict) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json",
                        headers={"Cache-Control": "no-store"})
