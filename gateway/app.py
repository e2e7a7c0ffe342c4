"""The aiohttp gateway: ``create_app(settings)``. Resources are opened and closed in
``cleanup_ctx``; errors become protocol values only here, at the edge.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from typing import AsyncIterator, Awaitable, Callable

import orjson
from redis.exceptions import RedisError
from aiohttp import web

from chat import keys, redis_pool
from chat.errors import ChatError, RateLimited
from chat.events import Delivery
from chat.loop_watch import LoopWatch
from chat.settings import Settings, SettingsError
from gateway import http, media, profiles, push, session, social, ws
from gateway.auth import key_set_context, provider_keys
from gateway.context import GATEWAY, SETTINGS, Gateway
from gateway.kafka import CommandProducer, DeliveryConsumer, ensure_delivery_topic
from gateway.limits import TokenBucket, send_bucket
from gateway.presence import PresenceSignals
from gateway.typing import Typing
from gateway.metrics import Metrics
from gateway.outbound import Outbound
from gateway.pipeline import Prober
from gateway.registry import Registry
from projections.connections import ConnectionRegistry
from projections.conversations import ConversationProjection
from projections.presence import PresenceProjection
from projections.signals import SignalBus
from projections.search import make_search_index
from projections.timelines import make_timeline_store
from projections.receipts import ReceiptProjection
from projections.workers import WorkerRegistry

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "bad_request", 409: "conflict", 413: "too_large", 429: "rate_limited"}
ACK_PREFIX = b'{"type":"ack"'
TYPING_PREFIX = keys.TYPING_BUCKET


# Every response: no MIME sniffing, no referrer leaving the page, never framed; the web client's
# pages may load scripts, styles and connections from this origin only (no inline script or
# style attribute), images and media also from blob: URLs (previews of the user's own uploads).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                               "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
}


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps({"error": {"code": code, "message": message}}), status=status,
                        content_type="application/json", headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except RateLimited as exc:
        return error_response(exc.status, exc.code, exc.message,
                              {"Retry-After": str(max(1, -(-exc.retry_after_ms // 1000)))})
    except ChatError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except RedisError as exc:
        log.warning("Redis failed under %s %s: %s", request.method, request.path, exc)
        return error_response(503, "unavailable", "a backing store is unavailable; retry shortly")
    except web.HTTPRequestEntityTooLarge as exc:
        return error_response(413, "too_large", exc.text or "request too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, HTTP_CODES.get(exc.status, "bad_request"), exc.reason)


async def resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    client = redis_pool.connect(settings)
    await client.ping()
    timelines = make_timeline_store(settings)
    await timelines.open()
    search = make_search_index(settings)
    await search.open()
    await asyncio.to_thread(ensure_delivery_topic, settings)
    registry = Registry(settings.gateway_id, ConnectionRegistry(client, settings.connection_ttl_s),
                        Outbound(settings.max_queued_bytes))
    metrics = Metrics()

    def dispatch(deliveries: list[Delivery]) -> None:
        metrics.delivered(deliveries)
        for delivery in deliveries:
            if delivery.frame.startswith(ACK_PREFIX):
                ack = orjson.loads(delivery.frame)
                for target in delivery.targets:
                    metrics.acked(target.user_id, ack["client_msg_id"])
        registry.dispatch(deliveries)

    consumer = DeliveryConsumer(settings, dispatch, loop)
    await asyncio.to_thread(consumer.start)
    conversations = ConversationProjection(client)
    bus = SignalBus(client, settings, conversations, registry.directory)
    producer = CommandProducer(settings)
    gw = Gateway(settings=settings, redis=client, timelines=timelines,
                 conversations=conversations, registry=registry,
                 producer=producer, consumer=consumer, metrics=metrics,
                 workers=WorkerRegistry(client, settings.app_id, settings.connection_ttl_s),
                 receipts=ReceiptProjection(client), send_limit=send_bucket(client, settings),
                 presence=PresenceProjection(client, settings.presence_ttl),
                 presence_signals=PresenceSignals(settings, producer, registry),
                 typing=Typing(settings, bus, TokenBucket(client, TYPING_PREFIX, settings.typing_rate_burst,
                                                          settings.typing_rate_per_s)),
                 prober=Prober(settings, producer, registry), signals=bus, search=search)
    app[GATEWAY] = gw
    subscribed = asyncio.Event()
    listener = asyncio.create_task(bus.listen(settings.gateway_id, dispatch, subscribed))
    await asyncio.wait_for(subscribed.wait(), 10)
    heartbeat = asyncio.create_task(_heartbeat(gw))
    watch = asyncio.create_task(LoopWatch(metrics.loop_lag, settings.loop_stall_ms / 1000).run())
    gw.prober.start()
    log.info("gateway %s ready", settings.gateway_id)
    yield
    gw.prober.close()
    watch.cancel()
    heartbeat.cancel()
    listener.cancel()
    gw.typing.close()
    consumer.close()
    await asyncio.to_thread(gw.producer.close)
    await timelines.close()
    await search.close()
    await client.aclose()


async def _close_sockets(app: web.Application) -> None:
    """On shutdown, before aiohttp waits for handlers: WebSocket handlers end only when their
    socket closes, so close them all now with GOING_AWAY (clients reconnect and sync)."""
    await app[GATEWAY].registry.close_all()


HEARTBEAT_SLICES = 15


def heartbeat_slice(user_id: str, slices: int = HEARTBEAT_SLICES) -> int:
    return zlib.crc32(user_id.encode()) % slices


async def _heartbeat(gw: Gateway) -> None:
    """Each user's directory entries and presence are renewed once per heartbeat interval, a
    fifteenth of the users at a time: all of them at once (a signal per user) stalled the worker
    for about 250 ms with 1,000 users (bench.scenarios b: the p99 at 100 msg/s)."""
    tick = 0
    while True:
        await asyncio.sleep(gw.settings.heartbeat_interval_s / HEARTBEAT_SLICES)
        tick = (tick + 1) % HEARTBEAT_SLICES
        users = [u for u in gw.registry.by_user if heartbeat_slice(u) == tick]
        try:
            await gw.registry.refresh(users)
        except Exception:  # Redis down: keep serving, retry on the next beat
            log.exception("connection heartbeat failed")
        try:
            await gw.presence_signals.heartbeat(users)
        except Exception:  # never let the heartbeat loop die
            log.exception("presence heartbeat failed")


def create_app(settings: Settings) -> web.Application:
    """The gateway; ``SettingsError`` for settings it must not serve with (``auth_problem``)."""
    problem = settings.auth_problem()
    if problem is not None:
        raise SettingsError(problem)
    app = web.Application(middlewares=[errors, provider_keys], client_max_size=settings.max_frame_bytes)
    app[SETTINGS] = settings
    if settings.jwks_configured:
        app.cleanup_ctx.append(key_set_context(settings))
    app.cleanup_ctx.append(resources)
    app.cleanup_ctx.append(media.resources)
    app.on_shutdown.append(_close_sockets)
    app.on_response_prepare.append(_security_headers)
    app.add_routes(http.routes)
    app.add_routes(media.routes)
    app.add_routes(push.routes)
    app.add_routes(social.routes)
    app.add_routes(profiles.routes)
    app.add_routes(session.routes)
    app.router.add_get("/v1/ws", ws.websocket)
    return app
