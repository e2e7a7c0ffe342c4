"""HTTP API handlers of PROTOCOL.md. Each validates, checks membership, and either reads a
projection or produces a command and waits for the stream workers' answer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from chat.errors import BadRequest, NotFound, TooLarge
from chat.events import ConversationUpdateRequested, Event, MemberRemoveRequested, MembersAddRequested, Origin
from chat.identity import check_user_id, check_user_ids
from gateway import creation
from gateway.auth import issue_token, request_user
from gateway.context import GATEWAY, Gateway, new_request, now_ms, seq_value
from gateway.limits import admit_change, admit_send
from gateway.media import attach_media
from projections.social import SocialProjection

routes = web.RouteTableDef()
STATIC = Path(__file__).resolve().parent / "static"
NO_CACHE = {"Cache-Control": "no-cache"}  # revalidate: a new client is picked up on reload
LAST_MESSAGE_CHARS = 200  # the conversation list shows the start of the last message


def json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def body_of(request: web.Request) -> dict[str, Any]:
    try:
        data = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


def ctx(request: web.Request) -> tuple[Gateway, str]:
    gw = request.app[GATEWAY]
    return gw, request_user(gw.settings, request)


def int_param(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be an integer") from exc
    if value < 0:
        raise BadRequest(f"{name} must not be negative")
    return value


def seq_param(request: web.Request, name: str) -> int | None:
    """A seq query parameter: absent, or 0 to ``MAX_SEQ`` (0 reads as "nothing seen")."""
    value = int_param(request, name)
    return None if value is None else seq_value(value, name, least=0)


@routes.get("/")
async def index(request: web.Request) -> web.FileResponse:
    """The web client (static files in gateway/static/, plain ES modules, no build step)."""
    return web.FileResponse(STATIC / "index.html", headers=NO_CACHE)


@routes.get("/static/{name}")
async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    path = STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise NotFound("no such file")
    return web.FileResponse(path, headers=NO_CACHE)


@routes.get("/v1")
async def describe(request: web.Request) -> web.Response:
    """What this server is and where its API lives."""
    gw = request.app[GATEWAY]
    return json({"service": "chat", "protocol": "v1", "gateway_id": gw.settings.gateway_id,
                 "web_client": "/", "websocket": "/v1/ws?device_id=<id>", "health": "/healthz",
                 "metrics": "/metrics", "dev_sign_in": "/v1/dev/token" if gw.settings.dev_sign_in else None})


@routes.post("/v1/dev/token")
async def dev_token(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    if not gw.settings.dev_sign_in:
        raise NotFound("development sign-in is off")
    user_id = check_user_id((await body_of(request)).get("user_id"))
    return json({"token": issue_token(gw.settings, user_id)})


@routes.post("/v1/conversations")
async def create_conversation(request: web.Request) -> web.Response:
    """A group, or a direct conversation (gateway/creation.py: idempotency keys, the limit)."""
    gw, user_id = ctx(request)
    data = await body_of(request)
    status, conversation = await creation.create(gw, user_id, data, creation.request_key(request, data))
    return json(conversation, status)


@routes.get("/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    items = []
    conversation_ids = await gw.conversations.conversation_ids(user_id)
    read_seqs = await gw.receipts.read_seqs(user_id, conversation_ids)
    # muted_until and unread_mentions (protocol 1.1), for every conversation in one round trip.
    social = await SocialProjection(gw.redis).list_fields(user_id, dict(zip(conversation_ids, read_seqs)), now_ms())
    for conversation_id, read_seq in zip(conversation_ids, read_seqs):
        conversation, (last_seq, last) = await asyncio.gather(
            gw.conversations.get(conversation_id), gw.conversations.last(conversation_id))
        if conversation is None:
            continue
        if last is not None:
            # As the timeline holds it now (edited, deleted, reacted to); gone once expired: the
            # list shows no more than history does.
            current = (await gw.timelines.messages(conversation_id, [last_seq])).get(last_seq)
            last = current.to_dict() if current is not None else None
        if last is not None and len(last["body"]) > LAST_MESSAGE_CHARS:
            last["body"] = last["body"][:LAST_MESSAGE_CHARS] + "…"
        conversation.update(last_seq=last_seq, last_message=last,
                            unread=await unread_count(gw, conversation_id, last_seq, read_seq, last))
        conversation.update(social[conversation_id])
        items.append(conversation)
    items.sort(key=lambda c: (c["last_message"] or {}).get("sent_at", c["created_at"]), reverse=True)
    return json({"conversations": items})


async def unread_count(gw: Gateway, conversation_id: str, last_seq: int, read_seq: int,
                       last: dict[str, Any] | None) -> int:
    """Messages after the read watermark that have not expired."""
    if last is None or last_seq <= read_seq:
        return 0
    first = await gw.timelines.page(conversation_id, after_seq=read_seq, limit=1)
    return last_seq - first.messages[0].seq + 1 if first.messages else 0


@routes.get("/v1/conversations/{conversation_id}")
async def get_conversation(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    await gw.require_member(conversation_id, user_id)
    conversation = await gw.conversations.get(conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    return json(conversation)


@routes.get("/v1/conversations/{conversation_id}/messages")
async def history(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    # A former member still reads what was written while they belonged, and nothing after.
    until = await gw.readable_until(conversation_id, user_id)
    limit = int_param(request, "limit")
    limit = gw.settings.default_page if limit is None else limit
    if not 1 <= limit <= gw.settings.max_page:
        raise BadRequest(f"limit must be between 1 and {gw.settings.max_page}")
    before_seq = seq_param(request, "before_seq")
    if until is not None:
        before_seq = until + 1 if before_seq is None else min(before_seq, until + 1)
    page = await gw.timelines.page(conversation_id, before_seq=before_seq,
                                   after_seq=seq_param(request, "after_seq"), limit=limit)
    return json({"messages": [m.to_dict() for m in page.messages], "has_more": page.has_more})


@routes.get("/v1/conversations/{conversation_id}/receipts")
async def receipts(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    await gw.require_member(conversation_id, user_id)
    members, marks = await asyncio.gather(gw.conversations.members(conversation_id),
                                          gw.receipts.watermarks(conversation_id))
    zero = {"delivered_seq": 0, "read_seq": 0}
    return json({"members": {m: marks.get(m, zero) for m in sorted(members)}})


async def change(gw: Gateway, conversation_id: str, user_id: str,
                 build: Callable[[Origin], Event]) -> tuple[int, Any]:
    """A member's change to a conversation: produce the command ``build`` makes for this request
    and wait for the workers' answer (the sequencer decides admin rights and the rest)."""
    await gw.require_member(conversation_id, user_id)
    request_id = new_request()
    return await gw.request(build(gw.origin(request_id=request_id)), conversation_id, request_id)


@routes.patch("/v1/conversations/{conversation_id}")
async def update_conversation(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    data = await body_of(request)
    changes = {k: data.get(k) for k in ("name", "description")}
    if any(v is not None and not isinstance(v, str) for v in changes.values()):
        raise BadRequest("name and description must be strings")
    status, frame = await change(gw, conversation_id, user_id, lambda origin: ConversationUpdateRequested(
        conversation_id=conversation_id, user_id=user_id, origin=origin, **changes))
    return json(frame["conversation"], status)


@routes.post("/v1/conversations/{conversation_id}/members")
async def add_members(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    user_ids = (await body_of(request)).get("user_ids")
    if not check_user_ids(user_ids, "user_ids"):
        raise BadRequest("user_ids must be a non-empty list of user ids")
    if len(user_ids) > gw.settings.max_members_per_request:
        raise TooLarge(f"at most {gw.settings.max_members_per_request} members per request")
    status, frame = await change(gw, conversation_id, user_id, lambda origin: MembersAddRequested(
        conversation_id=conversation_id, user_id=user_id, member_ids=user_ids, origin=origin))
    return json(frame["conversation"], status)


@routes.delete("/v1/conversations/{conversation_id}/members/{user_id}")
async def remove_member(request: web.Request) -> web.Response:
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    member_id = check_user_id(request.match_info["user_id"])
    await change(gw, conversation_id, user_id, lambda origin: MemberRemoveRequested(
        conversation_id=conversation_id, user_id=user_id, member_id=member_id, origin=origin))
    return web.Response(status=204)


@routes.post("/v1/conversations/{conversation_id}/messages")
async def post_message(request: web.Request) -> web.Response:
    """The idempotency key is ``client_msg_id``; an ``Idempotency-Key`` header stands for a
    missing one."""
    gw, user_id = ctx(request)
    data = await body_of(request)
    data["conversation_id"] = request.match_info["conversation_id"]
    if "client_msg_id" not in data and "Idempotency-Key" in request.headers:
        data["client_msg_id"] = creation.request_key(request)
    request_id = new_request()
    command = gw.send_command(user_id, data, None, request_id)
    role = await admit_send(gw, command)  # with the sender's role, in one round trip
    command = await attach_media(gw, command)
    gw.member(role)
    status, frame = await gw.request(command, command.conversation_id, request_id)
    gw.metrics.acked(user_id, command.client_msg_id)
    return json(frame, status)


def path_seq(request: web.Request) -> int:
    raw = request.match_info["seq"]
    if not raw.isdigit():
        raise BadRequest("seq must be a positive integer")
    return seq_value(int(raw), "seq")


async def change_message(request: web.Request, kind: str, extra: dict[str, Any]) -> tuple[int, Any]:
    """An edit, deletion or reaction over HTTP (protocol 1.1): the same command as the WebSocket
    frame, answered once the workers have made it durable (or found nothing to change). Its id is
    the request's ``Idempotency-Key`` header when given (a retry then gets the first answer),
    else a fresh one."""
    gw, user_id = ctx(request)
    request_id = new_request()
    data = {"conversation_id": request.match_info["conversation_id"], "seq": path_seq(request),
            "id": request.headers.get("Idempotency-Key") or f"http-{request_id}", **extra}
    command = gw.change_command(user_id, kind, data, None, request_id)
    await admit_change(gw, command)
    return await gw.request(command, command.conversation_id, request_id)


def _message_answer(frame: Any) -> web.Response:
    message = frame.get("message")
    if message is None:  # the message expired as it changed
        raise NotFound("no such message")
    return json(message)


@routes.patch("/v1/conversations/{conversation_id}/messages/{seq}")
async def edit_message(request: web.Request) -> web.Response:
    body = (await body_of(request)).get("body")
    _, frame = await change_message(request, "edit", {"body": body})
    return _message_answer(frame)


@routes.delete("/v1/conversations/{conversation_id}/messages/{seq}")
async def delete_message(request: web.Request) -> web.Response:
    await change_message(request, "delete", {})
    return web.Response(status=204)


@routes.put("/v1/conversations/{conversation_id}/messages/{seq}/reactions/{emoji}")
async def add_reaction(request: web.Request) -> web.Response:
    _, frame = await change_message(request, "react", {"emoji": request.match_info["emoji"], "on": True})
    return _message_answer(frame)


@routes.delete("/v1/conversations/{conversation_id}/messages/{seq}/reactions/{emoji}")
async def remove_reaction(request: web.Request) -> web.Response:
    _, frame = await change_message(request, "react", {"emoji": request.match_info["emoji"], "on": False})
    return _message_answer(frame)


@routes.get("/v1/conversations/{conversation_id}/changes")
async def changes(request: web.Request) -> web.Response:
    """The change log after ``after_change_seq``, ascending, each with its message as it is now.
    A former member sees the changes of the messages they could read."""
    gw, user_id = ctx(request)
    conversation_id = request.match_info["conversation_id"]
    until = await gw.readable_until(conversation_id, user_id)
    limit = int_param(request, "limit")
    limit = 50 if limit is None else max(1, min(limit, gw.settings.max_page))
    after = seq_param(request, "after_change_seq") or 0
    page = await gw.timelines.changes(conversation_id, after_change_seq=after, limit=limit)
    entries = [{"change_seq": c.change_seq, "change": c.change, "by": c.by, "message": m.to_dict()}
               for c, m in page.changes if until is None or c.seq <= until]
    return json({"changes": entries, "has_more": page.has_more})


@routes.get("/v1/search")
async def search(request: web.Request) -> web.Response:
    """Messages whose current body holds every word of ``q`` (protocol 1.1), newest first, only in
    conversations the caller can read: all of a member's, up to their removal for a former
    member. Each result is the message as it is now, with ``[start, end)`` code point highlights."""
    gw, user_id = ctx(request)
    q = request.query.get("q", "")
    if not q.strip():
        raise BadRequest("q is required")
    if len(q) > 1_000:
        raise BadRequest("q is longer than 1000 characters")
    limit = int_param(request, "limit")
    limit = 20 if limit is None else max(1, min(limit, 50))
    before = int_param(request, "before")
    conversation_id = request.query.get("conversation_id")
    scopes: dict[str, int | None]
    if conversation_id:
        scopes = {conversation_id: await gw.readable_until(conversation_id, user_id)}  # NotFound for strangers
    else:
        scopes = {c: None for c in await gw.conversations.conversation_ids(user_id)}
        for c, until in (await gw.conversations.former(user_id)).items():
            scopes.setdefault(c, until)
    page = await gw.search.search(scopes, q, before=before, limit=limit)
    wanted: dict[str, list[int]] = {}
    for hit in page.results:
        wanted.setdefault(hit.conversation_id, []).append(hit.seq)
    found = await asyncio.gather(*(gw.timelines.messages(c, seqs) for c, seqs in wanted.items()))
    current = {(c, seq): m for c, ms in zip(wanted, found) for seq, m in ms.items()}
    results = []
    for hit in page.results:
        message = current.get((hit.conversation_id, hit.seq))
        if message is None or message.deleted:  # expired or deleted since: never returned
            continue
        results.append({"message": message.to_dict(), "highlights": [list(h) for h in hit.highlights]})
    return json({"results": results, "has_more": page.has_more})


@routes.get("/v1/presence")
async def presence(request: web.Request) -> web.Response:
    """Status and last_seen of each user asked for; one who shares no conversation with the
    caller reads offline with last_seen null (nothing leaks)."""
    gw, user_id = ctx(request)
    # Ids are taken as given (" alice" is refused, not trimmed), like everywhere else.
    raw = request.query.get("user_ids", "").split(",")
    asked = list(dict.fromkeys(check_user_id(u, "user_ids") for u in raw if u))
    if not asked:
        raise BadRequest("user_ids is required: a comma-separated list of user ids")
    if len(asked) > gw.settings.max_presence_users:
        raise TooLarge(f"at most {gw.settings.max_presence_users} user ids per request")
    visible = sorted(await gw.conversations.sharing(user_id, asked))
    # A user who blocked the caller reads offline with last_seen null to them.
    hidden = await SocialProjection(gw.redis).blockers_of(user_id, [u for u in visible if u != user_id])
    visible = [u for u in visible if u not in hidden]
    known = await gw.presence.read(visible) if visible else {}
    return json({u: known.get(u, {"status": "offline", "last_seen": None}) for u in asked})


async def _check(probe: Awaitable[object], timeout: float = 2.0) -> bool:
    try:
        return bool(await asyncio.wait_for(probe, timeout))
    except Exception:  # any failure reads as "not reachable"; the details are in the logs
        return False


async def _workers_cover(gw: Gateway) -> bool:
    commands, events = await gw.workers.coverage()
    every = set(range(gw.settings.partitions))
    return every <= commands and every <= events


async def _store_answers(gw: Gateway) -> bool:
    await gw.timelines.ping()
    return True


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """200 once this gateway can serve: broker, Redis and store answer, its delivery consumer
    reads, live stream workers serve every partition (sequencers recovered), and a probe
    through every commands partition came back within ``probe_stale_s`` (gateway/pipeline.py)."""
    gw = request.app[GATEWAY]
    broker, redis_ok, store, workers = await asyncio.gather(
        asyncio.to_thread(gw.producer.broker_reachable, 2.0), _check(gw.redis.ping()),
        _check(_store_answers(gw)), _check(_workers_cover(gw)))
    checks = {"broker": broker, "redis": redis_ok, "store": store,
              "consumer": gw.consumer.reading(), "workers": workers, "pipeline": gw.prober.healthy()}
    ok = all(checks.values())
    return json({"status": "ok" if ok else "unavailable", "checks": checks,
                 "gateway_id": gw.settings.gateway_id}, 200 if ok else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    gw.metrics.connections.set(len(gw.registry))
    gw.metrics.observe_pipeline(gw.prober.ages(), gw.prober.healthy(), time.monotonic() - gw.consumer.last_poll,
                                gw.consumer.lag)
    gw.metrics.observe_outbound(gw.registry.outbound)
    return web.Response(body=gw.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
