"""Who sends a request: a JWT, either HS256 (or ``CHAT_JWT_ALGORITHM``) signed with the shared
secret, whose ``sub`` is the user id, or signed by an identity provider with a key of its JWKS
(``gateway/jwks.py``), whose ``CHAT_JWT_USER_CLAIM`` is the user id. Every token carries ``exp``.

The token comes from ``Authorization: Bearer``, from ``?token=`` where a route allows it (the
WebSocket and media for browsers), or from the web client's HttpOnly session cookie
(``gateway/session.py``). A request carrying the cookie must come from the web client's own
origin (``check_origin``): the cookie is sent by the browser, not chosen by the page.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable
from urllib.parse import urlsplit

import jwt
from aiohttp import web

from chat.errors import Forbidden, Unauthorized, Unavailable
from chat.identity import user_id_problem
from chat.settings import Settings
from gateway.jwks import KeySet

KEYS = web.AppKey("jwks", KeySet)
COOKIE = "chat_session"
SECURE_COOKIE = "__Host-chat_session"  # the name when Secure: the browser then refuses Domain=
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def issue_token(settings: Settings, user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + settings.token_ttl_s},
                      settings.jwt_secret, algorithm=settings.jwt_algorithm)


def token_claims(settings: Settings, token: str, keys: KeySet | None = None) -> tuple[str, dict]:
    """The user id and claims of a valid token, else ``Unauthorized``. The header's ``alg``
    picks the path: the JWKS algorithms go to the provider's keys, ``CHAT_JWT_ALGORITHM`` to
    the shared secret; anything else (``none``, HS256 without a secret) is refused."""
    try:
        alg = header_alg(jwt.get_unverified_header(token))
        if keys is not None and alg in keys.algorithms:
            claims, claim = provider_claims(settings, token, keys), settings.jwt_user_claim
        elif settings.hs_secret and alg == settings.jwt_algorithm:
            claims = jwt.decode(token, settings.hs_secret, algorithms=[settings.jwt_algorithm],
                                options={"require": ["sub", "exp"]})
            claim = "sub"
        else:
            raise Unauthorized(f"invalid token: algorithm {alg!r} is not accepted")
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    user_id = claims.get(claim)
    problem = user_id_problem(user_id)
    if problem is not None:  # a subject outside chat.identity's alphabet never becomes a user
        raise Unauthorized(f"invalid token subject ({claim}): {problem}")
    return user_id, claims


def header_alg(header: dict) -> str | None:
    """The header's ``alg`` if it is a string (a list or an object names no algorithm)."""
    alg = header.get("alg")
    return alg if isinstance(alg, str) else None


def provider_claims(settings: Settings, token: str, keys: KeySet) -> dict:
    """Claims of an identity provider's token: signed by the key its ``kid`` names, with that
    key's algorithm, for this service's audience, from the configured issuer, unexpired."""
    header = jwt.get_unverified_header(token)
    key = keys.key(header.get("kid"))
    if key is None:
        if not keys.keys and keys.error:
            raise Unavailable(f"the identity provider's keys are unavailable: {keys.error}")
        raise Unauthorized(f"invalid token: no key {header.get('kid')!r} in the identity provider's key set")
    if header.get("alg") != key.algorithm_name:
        raise Unauthorized(f"invalid token: key {header.get('kid')!r} signs {key.algorithm_name}, not {header.get('alg')}")
    return jwt.decode(token, key, algorithms=[key.algorithm_name], audience=settings.jwt_audience_list,
                      issuer=settings.expected_issuer, leeway=settings.jwt_leeway_s,
                      options={"require": ["exp", "iss", "aud"]})


def verify_token(settings: Settings, token: str, keys: KeySet | None = None) -> str:
    return token_claims(settings, token, keys)[0]


def bearer(request: web.Request, *, allow_query: bool = False) -> str:
    """The token of ``Authorization: Bearer``, then of ``?token=`` where allowed; else empty."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token and allow_query:
        token = request.query.get("token", "")
    return token


def session_cookie(request: web.Request) -> str:
    return request.cookies.get(SECURE_COOKIE) or request.cookies.get(COOKIE) or ""


def request_token(settings: Settings, request: web.Request, *, allow_query: bool = False) -> str:
    """The request's token: a bearer token if it has one, else the session cookie's, which
    only a request from the web client's own origin may use (else ``Forbidden``)."""
    token = bearer(request, allow_query=allow_query)
    if token:
        return token
    token = session_cookie(request)
    if not token:
        raise Unauthorized("missing bearer token")
    check_origin(settings, request)
    return token


def request_user(settings: Settings, request: web.Request, *, allow_query: bool = False) -> str:
    """The user of a request (see ``request_token``)."""
    return verify_token(settings, request_token(settings, request, allow_query=allow_query),
                        request.app.get(KEYS))


def check_origin(settings: Settings, request: web.Request) -> None:
    """Cross-site request forgery guard for cookie-authenticated requests, beside the cookie's
    SameSite=Strict: a state-changing request or a WebSocket upgrade must carry an ``Origin``
    of the web client, and any request that carries one (or ``Sec-Fetch-Site``) must agree."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in {"same-origin", "none"}:
        raise Forbidden(f"the session cookie is not accepted from a {site} request")
    origin = request.headers.get("Origin")
    if origin is None:
        upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
        if request.method in SAFE_METHODS and not upgrade:
            return
        raise Forbidden("a request with the session cookie must carry the Origin header")
    if not allowed_origin(settings, request, origin):
        raise Forbidden(f"the session cookie is not accepted from origin {origin[:100]!r}")


def allowed_origin(settings: Settings, request: web.Request, origin: str) -> bool:
    """``CHAT_WEB_ORIGINS`` if set; else an http(s) origin whose host is the request's Host
    (behind a TLS proxy the gateway sees http while the page is https)."""
    configured = settings.web_origin_list
    if configured:
        return origin.rstrip("/") in configured
    parts = urlsplit(origin)
    return parts.scheme in {"http", "https"} and bool(request.host) and parts.netloc.lower() == request.host.lower()


@web.middleware
async def provider_keys(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Before a handler checks a token signed by the identity provider, fetch the key it names
    if the set lacks it (or refresh a stale set): the fetch is awaited here, so the handlers'
    synchronous verification never waits on the network."""
    keys = request.app.get(KEYS)
    if keys is not None:
        for token in {bearer(request, allow_query=True), session_cookie(request)} - {""}:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.PyJWTError:
                continue  # refused when a handler verifies it
            if header_alg(header) in keys.algorithms:
                await keys.ensure(header.get("kid"))
    return await handler(request)


def key_set_context(settings: Settings):
    """The app's ``cleanup_ctx`` for the provider's key set, when one is configured."""
    async def context(app: web.Application):
        keys = KeySet(settings)
        await keys.open()
        app[KEYS] = keys
        yield
        await keys.close()
    return context
