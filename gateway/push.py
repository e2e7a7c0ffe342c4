"""``POST /v1/devices`` (a device's push target) and whether a conversation's pushes may carry
its content (``GET``/``PUT /v1/conversations/{id}/privacy``, additions to the protocol).

Decision: conversations are private by default (``CHAT_PUSH_PRIVATE_DEFAULT=true``): a push
says "New message" and carries ids only, and the app fetches the message over its own
authenticated connection. A group's admins (either member of a direct conversation) may set
``{"private": false}`` to have sender, group name and a preview of the text in pushes.
"""

from __future__ import annotations

from aiohttp import web

import orjson

from chat.errors import BadRequest, Conflict, Forbidden, NotFound, TooLarge
from chat.identity import check_device_id
from gateway.auth import request_user
from gateway.context import GATEWAY
from gateway.http import body_of, json
from projections.push import PLATFORMS, DeviceRegistry
from push.egress import EgressPolicy, EgressRefused

routes = web.RouteTableDef()
MAX_PUSH_TOKEN_CHARS = 4096  # a web push subscription (JSON) is the longest


def registry(request: web.Request) -> tuple[DeviceRegistry, str]:
    gw = request.app[GATEWAY]
    return DeviceRegistry(gw.redis, gw.settings.push_private_default), request_user(gw.settings, request)


@routes.post("/v1/devices")
async def register_device(request: web.Request) -> web.Response:
    devices, user_id = registry(request)
    data = await body_of(request)
    device_id, push_token = check_device_id(data.get("device_id")), data.get("push_token")
    platform = data.get("platform")
    if platform not in PLATFORMS:
        raise BadRequest(f"platform must be one of {list(PLATFORMS)}")
    if not isinstance(push_token, str) or not push_token:
        raise BadRequest("push_token is required and must be a non-empty string")
    if len(push_token) > MAX_PUSH_TOKEN_CHARS:
        raise TooLarge(f"push_token is longer than {MAX_PUSH_TOKEN_CHARS} characters")
    check_target(EgressPolicy.from_settings(request.app[GATEWAY].settings), platform, push_token)
    limit = request.app[GATEWAY].settings.max_push_devices_per_user
    if not await devices.register(user_id, device_id, platform, push_token, max_devices=limit):
        raise Conflict(f"at most {limit} push devices per user; unregister one "
                       "(DELETE /v1/devices/{device_id}) first")
    return web.Response(status=204)


def check_target(policy: EgressPolicy, platform: str, push_token: str) -> None:
    """``BadRequest`` for a URL the push worker would refuse to contact (``push/egress.py``):
    a webhook's URL, a Web Push subscription's endpoint. Where a name resolves to is checked
    when a push is sent, not here."""
    url = push_token
    if platform == "webpush":
        try:
            url = orjson.loads(push_token)["endpoint"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest("a webpush push_token is the subscription JSON with its endpoint") from None
        if not isinstance(url, str):
            raise BadRequest("a webpush subscription's endpoint must be a URL")
    elif platform != "webhook":
        return
    try:
        policy.check_url(url)
    except EgressRefused as exc:
        raise BadRequest(f"push_token: {exc.message}") from None


@routes.delete("/v1/devices/{device_id}")
async def unregister_device(request: web.Request) -> web.Response:
    devices, user_id = registry(request)
    device_id = check_device_id(request.match_info["device_id"])
    await devices.unregister(user_id, device_id)
    return web.Response(status=204)


@routes.get("/v1/conversations/{conversation_id}/privacy")
async def get_privacy(request: web.Request) -> web.Response:
    devices, user_id = registry(request)
    conversation_id = request.match_info["conversation_id"]
    await request.app[GATEWAY].require_member(conversation_id, user_id)
    private = (await devices.private([conversation_id]))[conversation_id]
    return json({"conversation_id": conversation_id, "private": private})


@routes.put("/v1/conversations/{conversation_id}/privacy")
async def set_privacy(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    devices, user_id = registry(request)
    conversation_id = request.match_info["conversation_id"]
    role = await gw.require_member(conversation_id, user_id)
    private = (await body_of(request)).get("private")
    if not isinstance(private, bool):
        raise BadRequest("private must be true or false")
    conversation = await gw.conversations.get(conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    if conversation["type"] == "group" and role != "admin":
        raise Forbidden("only admins change a group's privacy")
    await devices.set_private(conversation_id, private)
    return json({"conversation_id": conversation_id, "private": private})
