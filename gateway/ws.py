"""The WebSocket endpoint: authenticate before the upgrade, register the device, then
answer frames. Every bad frame gets an ``error`` frame and the socket stays open.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from redis.exceptions import RedisError

from chat.errors import BadRequest, ChatError, Unavailable
from gateway.auth import request_user
from chat.events import ReceiptRecordRequested
from chat.identity import check_device_id
from gateway.context import GATEWAY, MAX_ID_CHARS, Gateway, id_field, seq_value
from gateway.limits import admit_change, admit_connection, admit_send
from gateway.media import attach_media
from gateway.connection import CLOSE_RETRY, Connection
from gateway.social import typing_dropped
from gateway.upgraded import shed

log = logging.getLogger(__name__)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    gw = request.app[GATEWAY]
    user_id = request_user(gw.settings, request, allow_query=True)  # 401 before the upgrade
    device_id = check_device_id(request.query.get("device_id", ""))
    holder = await admit_connection(gw, user_id, device_id)  # 429 before the upgrade
    ws = web.WebSocketResponse(max_msg_size=gw.settings.max_frame_bytes, heartbeat=30.0)
    await ws.prepare(request)
    shed(request, ws)
    conn = Connection(ws, user_id, device_id, gw.registry.outbound, request.transport)
    # hello is queued first, before the registry can push anything to the connection (frames
    # delivered while registering awaits Redis queue behind it): PROTOCOL.md, hello is first.
    conn.send_now({"type": "hello", "user_id": user_id, "device_id": device_id,
                   "server_id": gw.settings.gateway_id})
    # Live messages wait for the device's first sync (or a short grace if it never syncs), so
    # one that lands between registering and syncing cannot overtake the replay.
    conn.hold_until_sync(gw.settings.sync_grace_s)
    if not await _register(gw, conn, holder):
        return ws
    gw.presence_signals.connected(user_id, device_id)
    gw.metrics.connections.inc()
    log.info("connected", extra={"user_id": user_id, "device_id": device_id})
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await on_text(gw, conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                error(gw, conn, BadRequest("frames are JSON text"))
    except ConnectionResetError:
        pass  # the client went while its ping was answered: a disconnect, not a gateway error
    finally:
        gw.metrics.connections.dec()
        log.info("disconnected", extra={"user_id": user_id, "device_id": device_id})
        await gw.registry.remove(conn)
        gw.presence_signals.disconnected(user_id, device_id)
        if not gw.registry.devices(user_id):
            await gw.typing.gone(user_id)
    return ws


async def _register(gw: Gateway, conn: Connection, holder: str | None) -> bool:
    """Enter the socket in the directory (closing an older socket of the device, here or on the
    gateway ``holder`` that held it). If Redis fails, no delivery could be routed to the socket:
    it is closed with 1013 (try again later) and the device reconnects and syncs; False then."""
    try:
        await gw.registry.add(conn)  # closes an older socket of this device here
        if holder is not None and holder != gw.settings.gateway_id:
            await gw.signals.replaced(conn.user_id, conn.device_id, holder)  # ... or on the gateway holding it
        return True
    except RedisError as exc:
        log.warning("could not register %s/%s: %s", conn.user_id, conn.device_id, exc)
        await gw.registry.remove(conn)
        await conn.ws.close(code=CLOSE_RETRY, message=b"a backing store is unavailable; reconnect and sync")
        return False


def error(gw: Gateway, conn: Connection, exc: ChatError) -> None:
    gw.metrics.errors.labels(exc.code).inc()
    log.info("error answered", extra={"code": exc.code, "user_id": conn.user_id, "device_id": conn.device_id})
    frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
    if exc.ref is not None:
        frame["ref"] = exc.ref
    retry_after_ms = getattr(exc, "retry_after_ms", None)
    if retry_after_ms is not None:
        frame["retry_after_ms"] = retry_after_ms
    conn.send_now(frame)


async def on_text(gw: Gateway, conn: Connection, text: str) -> None:
    ref = kind = None
    try:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"frame is not JSON: {exc}") from exc
        if not isinstance(frame, dict):
            raise BadRequest("frame must be a JSON object")
        kind = frame.get("type")
        ref_field = "id" if kind in CHANGES else "client_msg_id"  # what an error's ref echoes
        ref = frame.get(ref_field) if isinstance(frame.get(ref_field), str) else None
        gw.metrics.frames_in.labels(kind if kind in HANDLERS else "unknown").inc()
        handler = HANDLERS.get(kind)  # type: ignore[arg-type]
        if handler is None:
            raise BadRequest(f"unknown frame type {kind!r}; expected one of {sorted(HANDLERS)}")
        await handler(gw, conn, frame)
    except ChatError as exc:
        if exc.ref is None:
            exc.ref = ref
        error(gw, conn, exc)
    except RedisError as exc:  # Redis away: the client retries; the socket stays open
        log.warning("Redis failed under a %s frame: %s", kind, exc)
        error(gw, conn, Unavailable("a backing store is unavailable; retry shortly", ref=ref))


async def on_send(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    command = gw.send_command(conn.user_id, frame, conn.device_id)
    role = await admit_send(gw, command)  # with the sender's role, in one round trip
    command = await attach_media(gw, command)
    gw.member(role)
    produce(gw, conn, command, command.client_msg_id)


def produce(gw: Gateway, conn: Connection, command: Any, ref: str) -> None:
    """Produce a command without waiting; if the broker refuses it, an ``error`` with ``ref``."""
    future = gw.producer.send(command, command.conversation_id)

    def failed(fut: Any) -> None:
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            exc.ref = ref
            error(gw, conn, exc)

    future.add_done_callback(failed)


async def on_change(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    """``edit``, ``delete``, ``react`` (protocol 1.1): answered ``changed`` (or ``error`` with
    ``ref`` = the frame's ``id``) by the stream workers, like a send's ``ack``."""
    command = gw.change_command(conn.user_id, CHANGES[frame["type"]], frame, conn.device_id)
    await admit_change(gw, command)
    produce(gw, conn, command, command.change_id)


async def on_ping(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    pong: dict[str, Any] = {"type": "pong"}
    if "id" in frame:
        pong["id"] = frame["id"]
    conn.send_now(pong)


async def on_sync(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    """Replay every message after the device's cursor, per conversation, then ``synced``. With
    ``change_cursors`` (protocol 1.1), each conversation's changes after its change cursor follow
    its messages, and ``synced`` carries ``change_cursors`` too."""
    cursors = _cursors(frame, "cursors")
    change_cursors = _cursors(frame, "change_cursors") if "change_cursors" in frame else None
    result: dict[str, int] = {}
    changes_result: dict[str, int] = {}
    # Live messages wait while the replay runs, so each conversation arrives in seq order and
    # whatever is accepted meanwhile comes by one path or the other (timeline before delivery).
    conn.hold()
    complete = False
    try:
        for conversation_id in await gw.conversations.conversation_ids(conn.user_id):
            cursor = cursors.get(conversation_id, 0)
            while not conn.closed:
                page = await gw.timelines.page(conversation_id, after_seq=cursor, limit=gw.settings.max_page)
                for message in page.messages:
                    await conn.drained()  # paced by the device: the replay never trips the byte bound
                    conn.replay(orjson.dumps({"type": "message", "message": message.to_dict()}))
                    cursor = message.seq
                if not page.has_more:
                    break
            result[conversation_id] = cursor
            if change_cursors is not None:
                changes_result[conversation_id] = await _replay_changes(
                    gw, conn, conversation_id, change_cursors.get(conversation_id, 0))
        synced: dict[str, Any] = {"type": "synced", "cursors": result}
        if change_cursors is not None:
            synced["change_cursors"] = changes_result
        conn.send_now(synced)
        complete = True
    finally:
        if complete:
            conn.release(result, changes_result)
            conn.synced(result, changes_result)
        else:
            # A replay cut short (Redis or the store failed under it) must not be followed by
            # live frames: the device would hold messages past a gap it never learns of. It is
            # closed instead (1013), and reconnects and syncs from the cursors it has.
            conn.abandon("the sync failed; reconnect and sync")


def _cursors(frame: dict[str, Any], name: str) -> dict[str, int]:
    cursors = frame.get(name, {})
    if not isinstance(cursors, dict):
        raise BadRequest(f"{name} must map conversation ids to seqs")
    for conversation_id, cursor in cursors.items():
        seq_value(cursor, f"the {name} entry of {conversation_id[:MAX_ID_CHARS]!r}", least=0)
    return cursors


async def _replay_changes(gw: Gateway, conn: Connection, conversation_id: str, cursor: int) -> int:
    """Every change after ``cursor``, as ``message_updated`` with the message as it is now;
    returns the conversation's ``last_change_seq``."""
    while not conn.closed:
        page = await gw.timelines.changes(conversation_id, after_change_seq=cursor, limit=gw.settings.max_page)
        for change, message in page.changes:
            await conn.drained()
            conn.replay(orjson.dumps({"type": "message_updated", "conversation_id": conversation_id,
                                      "change_seq": change.change_seq, "change": change.change, "by": change.by,
                                      "message": message.to_dict()}))
            cursor = change.change_seq
        if not page.has_more:
            break
    # The cursor the replay reached, not a later read of the counter: a change made after the
    # replay's read comes live, and the live frames are filtered by this cursor.
    return cursor


async def on_receipt(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    """Every message up to ``seq`` was delivered to / read by this user (any of their devices)."""
    conversation_id = id_field(frame, "conversation_id")
    seq, status = seq_value(frame.get("seq"), "seq"), frame.get("status")
    if status not in ("delivered", "read"):
        raise BadRequest('status must be "delivered" or "read"')
    await gw.require_member(conversation_id, conn.user_id)
    command = ReceiptRecordRequested(conversation_id=conversation_id, user_id=conn.user_id, seq=seq,
                                     status=status, origin=gw.origin(conn.device_id))
    gw.producer.send(command, conversation_id)


async def on_typing(gw: Gateway, conn: Connection, frame: dict[str, Any]) -> None:
    """The user started (or still is) or stopped typing: to the other members' devices, not stored."""
    conversation_id = id_field(frame, "conversation_id")
    typing = frame.get("typing")
    if not isinstance(typing, bool):
        raise BadRequest("typing must be true or false")
    await gw.require_member(conversation_id, conn.user_id)
    if await typing_dropped(gw, conversation_id, conn.user_id):
        return  # blocked there: dropped, and nothing says so
    await gw.typing.update(conn.user_id, conversation_id, typing)


CHANGES = {"edit": "edit", "delete": "delete", "react": "react"}
HANDLERS = {"send": on_send, "ping": on_ping, "sync": on_sync, "receipt": on_receipt, "typing": on_typing,
            "edit": on_change, "delete": on_change, "react": on_change}
