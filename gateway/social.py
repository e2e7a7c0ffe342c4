"""Blocking and mute (protocol 1.1): ``PUT``/``DELETE``/``GET /v1/users/me/blocked...`` and
``PUT /v1/conversations/{id}/settings``, and the block checks of presence and typing.

Both are events: a block is a ``BlockRequested`` keyed by the pair's direct conversation id, so
the sequencer that owns that conversation enforces it (even before it exists); a mute is a
``MuteRequested`` on the conversation's partition. Each request waits for the workers' answer,
sent once the projection (``projections/social.py``) holds the change.
"""

from __future__ import annotations

from aiohttp import web

from chat.errors import BadRequest
from chat.events import BlockRequested, MuteRequested
from chat.identity import check_user_id
from chat.ids import direct_conversation_id, is_direct_id
from gateway.context import MAX_SEQ, Gateway, new_request
from gateway.http import body_of, change, ctx, json
from projections.social import SocialProjection

routes = web.RouteTableDef()


def social(gw: Gateway) -> SocialProjection:
    return SocialProjection(gw.redis)


async def _block(request: web.Request, blocked: bool) -> web.Response:
    gw, user_id = ctx(request)
    other = check_user_id(request.match_info["user_id"], "user_id")
    if other == user_id:
        raise BadRequest("you cannot block yourself")
    conversation_id = direct_conversation_id(user_id, other)
    request_id = new_request()
    command = BlockRequested(conversation_id=conversation_id, user_id=user_id, blocked_id=other, blocked=blocked,
                             origin=gw.origin(request_id=request_id))
    await gw.request(command, conversation_id, request_id)
    return web.Response(status=204)


@routes.put("/v1/users/me/blocked/{user_id}")
async def block(request: web.Request) -> web.Response:
    return await _block(request, True)


@routes.delete("/v1/users/me/blocked/{user_id}")
async def unblock(request: web.Request) -> web.Response:
    return await _block(request, False)


@routes.get("/v1/users/me/blocked")
async def blocked_users(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    return json({"user_ids": await social(gw).blocked_by(user_id)})


def muted_until_value(data: dict[str, object]) -> int | None:
    """``muted_until``: null, -1 (until unmuted) or a time in ms; anything else is BadRequest."""
    if "muted_until" not in data:
        raise BadRequest("muted_until is required: null, -1 or a time in ms")
    value = data["muted_until"]
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= MAX_SEQ:
        raise BadRequest("muted_until must be null, -1 or a time in ms")
    return value


@routes.put("/v1/conversations/{conversation_id}/settings")
async def settings(request: web.Request) -> web.Response:
    """A member's settings of a conversation, on all of their devices: ``{"muted_until"}``."""
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    muted_until = muted_until_value(await body_of(request))
    _, frame = await change(gw, conversation_id, user_id, lambda origin: MuteRequested(
        conversation_id=conversation_id, user_id=user_id, muted_until=muted_until, origin=origin))
    return json({"muted_until": frame["muted_until"]})


async def typing_dropped(gw: Gateway, conversation_id: str, user_id: str) -> bool:
    """A blocked user's typing in their direct conversation with the blocker goes nowhere."""
    if not is_direct_id(conversation_id):
        return False
    others = [m for m in await gw.conversations.members(conversation_id) if m != user_id]
    return bool(await social(gw).blockers_of(user_id, others))

