"""Profiles (protocol 1.1): ``PUT /v1/users/me`` and ``GET /v1/users?ids=``. (Who may download
an avatar: ``gateway.media.readable``.)

A change is a ``ProfileUpdated`` event on the profiles topic, keyed by user id; the profiles
agent (``streams/profile_agents.py``) projects it and sends the ``profile`` frames, and answers
this request with the profile as projected, so a ``GET`` after the answer reads the change.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from aiohttp import web

from chat import frames
from chat.errors import BadRequest, TooLarge, error_for_code
from chat.events import ProfileUpdated
from chat.identity import check_user_id
from chat.ids import is_media_id
from gateway.context import Gateway, new_request, now_ms
from gateway.http import body_of, ctx, json
from projections.profiles import ProfileProjection

routes = web.RouteTableDef()
MAX_DISPLAY_NAME = 64  # code points


def display_name_value(value: Any) -> str:
    """1 to 64 code points, none of category Cc (control) or Cf (format: bidi overrides,
    zero-width joiners...); anything else is BadRequest, never rewritten."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_DISPLAY_NAME:
        raise BadRequest(f"display_name must be a string of 1 to {MAX_DISPLAY_NAME} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise BadRequest("display_name must not hold control or format characters")
    return value


async def avatar_value(gw: Gateway, user_id: str, value: Any) -> str | None:
    """null (no avatar) or an image the caller uploaded (``POST /v1/media``)."""
    if value is None:
        return None
    if not isinstance(value, str) or not is_media_id(value):
        raise BadRequest("avatar_media_id must be null or a media id")
    info = await gw.media.index.get(value)
    if info is None or info.uploader != user_id:
        raise BadRequest("unknown avatar_media_id: upload the image with POST /v1/media first")
    if not info.content_type.startswith("image/"):
        raise BadRequest("an avatar is an image")
    return value


@routes.put("/v1/users/me")
async def update_profile(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    data = await body_of(request)
    if "display_name" not in data and "avatar_media_id" not in data:
        raise BadRequest("nothing to change: give display_name or avatar_media_id")
    display_name = display_name_value(data["display_name"]) if "display_name" in data else None
    avatar_set = "avatar_media_id" in data
    avatar = await avatar_value(gw, user_id, data["avatar_media_id"]) if avatar_set else None
    request_id = new_request()
    event = ProfileUpdated(user_id=user_id, updated_at=now_ms(), origin=gw.origin(request_id=request_id),
                           display_name=display_name, avatar_set=avatar_set, avatar_media_id=avatar)
    waiter = gw.registry.expect(request_id)
    await gw.producer.send(event, user_id, topic=gw.settings.profiles_topic)
    _, frame = await gw.registry.wait(request_id, waiter, gw.settings.request_timeout_s)
    answer = frames.decode(frame)
    if answer.get("type") == "error":
        raise error_for_code(answer["code"], answer["message"])
    return json(answer["profile"])


@routes.get("/v1/users")
async def profiles(request: web.Request) -> web.Response:
    """``{"<id>": profile}`` for each id asked (``ids=a,b``); anyone's profile can be read."""
    gw, _ = ctx(request)
    raw = request.query.get("ids", "").split(",")
    asked = list(dict.fromkeys(check_user_id(u, "ids") for u in raw if u))
    if not asked:
        raise BadRequest("ids is required: a comma-separated list of user ids")
    if len(asked) > gw.settings.max_presence_users:
        raise TooLarge(f"at most {gw.settings.max_presence_users} user ids per request")
    return json(await ProfileProjection(gw.redis).read(asked))

