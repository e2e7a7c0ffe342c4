"""Bearer tokens: JWT (HS256 by default) whose ``sub`` is the user id and which carries ``exp``."""

from __future__ import annotations

import time

import jwt
from aiohttp import web

from chat.errors import Unauthorized
from chat.identity import user_id_problem
from chat.settings import Settings


def issue_token(settings: Settings, user_id: str) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + settings.token_ttl_s},
                      settings.jwt_secret, algorithm=settings.jwt_algorithm)


def verify_token(settings: Settings, token: str) -> str:
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=[settings.jwt_algorithm],
                            options={"require": ["sub", "exp"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    user_id = claims["sub"]
    problem = user_id_problem(user_id)
    if problem is not None:  # a subject outside chat.identity's alphabet never becomes a user
        raise Unauthorized(f"invalid token subject: {problem}")
    return user_id


def request_user(settings: Settings, request: web.Request, *, allow_query: bool = False) -> str:
    """The user of a request: ``Authorization: Bearer``, or ``?token=`` where allowed (browsers' WebSocket)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    if not token and allow_query:
        token = request.query.get("token", "")
    if not token:
        raise Unauthorized("missing bearer token")
    return verify_token(settings, token)
