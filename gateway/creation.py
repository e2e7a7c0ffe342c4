"""Creating conversations (``POST /v1/conversations``): idempotency keys and the per-user limit.

Idempotency: a creating POST may carry a key, the ``Idempotency-Key`` header or
``client_request_id`` in the body (``request_key``). A group's id is derived from (user, key)
(``chat.ids.keyed_group_id``), so a retry names the same group: the gateway answers it from the
projection if the group is there; otherwise the sequencer, which decides every create of one
id on one partition, refuses the second create as existing, and the workers answer it with the
group the first made (projections/delivery.py). The first answer being lost (a 503 after the workers' answer timed
out, a dropped connection) therefore never makes a second group. A direct conversation's id is
already derived from its two members.

Limit: ``conversations_per_hour`` creations per user, a token bucket in Redis shared by every
gateway (``rate:create:{user}``); past it ``429 rate_limited`` with ``Retry-After``. Only
creating counts (an existing direct conversation answered 200 does not), and a creation is
charged once per conversation id (``created:{user}:{cid}``, kept ``dedup_window_s``), so a retry
with the same key is not counted again.
"""

from __future__ import annotations

from typing import Any, Callable

from aiohttp import web

from chat import keys
from chat.errors import BadRequest, Forbidden, RateLimited, TooLarge
from chat.events import ConversationCreateRequested, Origin
from chat.identity import check_user_id, check_user_ids
from chat.ids import direct_conversation_id, keyed_group_id, new_group_id
from gateway.context import MAX_ID_CHARS, Gateway, new_request
from gateway.limits import TokenBucket
from projections.social import SocialProjection

HOUR_S = 3_600.0


def request_key(request: web.Request, data: dict[str, Any] | None = None) -> str | None:
    """The request's idempotency key: the ``Idempotency-Key`` header, else the body's
    ``client_request_id``; None without one. 1 to 128 printable characters."""
    key = request.headers.get("Idempotency-Key")
    if key is None and data is not None:
        key = data.get("client_request_id")
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_ID_CHARS or not key.isprintable():
        raise BadRequest(f"an idempotency key is 1 to {MAX_ID_CHARS} printable characters")
    return key


async def create(gw: Gateway, user_id: str, data: dict[str, Any], key: str | None) -> tuple[int, Any]:
    """Create the conversation ``data`` describes: (HTTP status, conversation)."""
    kind = data.get("type")
    if kind == "direct":
        return await _direct(gw, user_id, data)
    if kind == "group":
        return await _group(gw, user_id, data, key)
    raise BadRequest('type must be "direct" or "group"')


async def _direct(gw: Gateway, user_id: str, data: dict[str, Any]) -> tuple[int, Any]:
    peer = check_user_id(data.get("peer"), "peer")
    if peer == user_id:
        raise BadRequest("a direct conversation needs a peer other than yourself")
    conversation_id = direct_conversation_id(user_id, peer)
    if await SocialProjection(gw.redis).blockers_of(user_id, [peer]):
        # Refused even when it exists (the sequencer refuses it too, as it decides creates).
        raise Forbidden("you cannot start a conversation with this user")
    existing = await gw.conversations.get(conversation_id)
    if existing is not None:
        return 200, existing
    await admit_creation(gw, user_id, conversation_id)
    return await _request(gw, lambda origin: ConversationCreateRequested(
        conversation_id=conversation_id, kind="direct", creator_id=user_id, member_ids=[peer],
        origin=origin))


async def _group(gw: Gateway, user_id: str, data: dict[str, Any], key: str | None) -> tuple[int, Any]:
    members = check_user_ids(data.get("members", []), "members")
    name, description = data.get("name", ""), data.get("description", "")
    if len(members) > gw.settings.max_members_per_request:
        raise TooLarge(f"at most {gw.settings.max_members_per_request} members per request")
    if not isinstance(name, str) or not isinstance(description, str):
        raise BadRequest("name and description must be strings")
    conversation_id = new_group_id() if key is None else keyed_group_id(user_id, key)
    if key is not None:
        existing = await gw.conversations.get(conversation_id)
        if _member(existing, user_id):  # a retry: the first answer again (whatever this one asks)
            return 201, existing
    await admit_creation(gw, user_id, None if key is None else conversation_id)
    return await _request(gw, lambda origin: ConversationCreateRequested(
        conversation_id=conversation_id, kind="group", creator_id=user_id, member_ids=members,
        origin=origin, name=name, description=description))


async def _request(gw: Gateway, build: Callable[[Origin], ConversationCreateRequested]) -> tuple[int, Any]:
    """Produce the create ``build`` makes for this request and wait for its answer. A create of
    an id that exists is answered by the workers with the conversation as it is, to a member
    (projections/delivery.py): a direct conversation 200, a keyed group's retry 201."""
    request_id = new_request()
    command = build(gw.origin(request_id=request_id))
    status, frame = await gw.request(command, command.conversation_id, request_id)
    return status, frame["conversation"]


def _member(conversation: dict[str, Any] | None, user_id: str) -> bool:
    """Whether ``user_id`` is a member of ``conversation`` (None: it does not exist): a creator
    who left the group is told it exists (409), not shown it."""
    return conversation is not None and any(m["user_id"] == user_id for m in conversation["members"])


async def admit_creation(gw: Gateway, user_id: str, conversation_id: str | None) -> None:
    """Spend one of the user's creation tokens, unless this user was charged for
    ``conversation_id`` already (a retry); ``RateLimited`` when none is left."""
    marker = None if conversation_id is None else keys.created(user_id, conversation_id)
    if marker is not None and not await gw.redis.set(marker, 1, nx=True, ex=int(gw.settings.dedup_window_s)):
        return
    per_hour = gw.settings.conversations_per_hour
    bucket = TokenBucket(gw.redis, keys.CREATE_BUCKET, per_hour, per_hour / HOUR_S)
    retry_after_ms = await bucket.take(user_id)
    if retry_after_ms:
        if marker is not None:
            await gw.redis.delete(marker)  # not created: a retry is charged (and decided) anew
        raise RateLimited(f"at most {per_hour} new conversations per hour; retry in "
                          f"{-(-retry_after_ms // 1000)} s", retry_after_ms=retry_after_ms)
