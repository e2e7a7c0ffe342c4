"""Server-side request forgery through push: a webhook (or Web Push endpoint) aimed at this
machine, its network or the cloud's metadata service is refused when it is registered, and
never contacted when a push is sent, however its name resolves; the operator's allow-list
opens a private range on purpose. Real gateway, Redis and a local server recording every hit."""

from __future__ import annotations

import ipaddress
import json
import socket

import pytest
import pytest_asyncio
import redis.asyncio as redis

import push.egress
from chat.events import PushFailed, PushRequested
from chat.settings import Settings
from infra.services import free_port
from push.providers import providers_for
from push.sender import PushSender
from tests.client import sign_in_users
from tests.push_server import PushEndpoints
from tests.support import System

STRICT = {"CHAT_PUSH_ALLOW_HTTP": "false", "CHAT_PUSH_ALLOW_CIDRS": ""}


@pytest_asyncio.fixture(loop_scope="session")
async def endpoints():
    server = await PushEndpoints(free_port()).start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    """Gateway 0 as deployed by default (https, public addresses only); gateway 1 as the
    test stack's (http allowed, 127.0.0.0/8 allow-listed)."""
    system = System(stack, tmp_path_factory.mktemp("egress"), partitions=1)
    system.start_worker()
    system.start_gateway(**STRICT)
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def client(stack):
    c = redis.Redis.from_url(stack.redis_url.rsplit("/", 1)[0] + "/14")
    await c.flushdb()
    yield c
    await c.aclose()


def hostile(port: int) -> list[str]:
    """Targets that reach this machine, its network or the metadata service, and URLs that
    smuggle credentials."""
    return [f"http://127.0.0.1:{port}/hook/ok-a", f"https://127.0.0.1:{port}/hook/ok-b",
            "https://169.254.169.254/latest/meta-data/", f"https://[::1]:{port}/hook/ok-c",
            f"https://0.0.0.0:{port}/hook/ok-d", f"https://2130706433:{port}/hook/ok-e",
            f"https://0x7f.1:{port}/hook/ok-f", f"https://localhost:{port}/hook/ok-g",
            f"https://hooks.localhost:{port}/hook/ok-h", f"https://[::ffff:127.0.0.1]:{port}/hook/ok-i",
            "https://10.1.2.3/hook", "https://192.168.0.1/hook", "https://[fd00::1]/hook",
            f"https://user:secret@127.0.0.1:{port}/hook/ok-j", "https://user@hooks.example.com/hook",
            "ftp://hooks.example.com/hook", "https:///nohost"]


async def test_hostile_webhooks_are_refused_at_registration(system, session, endpoints):
    (alice,) = await sign_in_users(session, system.url(system.gateways[0]), "alice")
    for n, url in enumerate(hostile(endpoints.port)):
        status, body = await alice.call("POST", "/v1/devices", json={
            "device_id": f"d{n}", "platform": "webhook", "push_token": url})
        assert status == 400 and body["error"]["code"] == "bad_request", (url, status, body)
        assert body["error"]["message"].startswith("push_token: "), body
    sub = {"endpoint": "https://169.254.169.254/wp/1", "keys": {"p256dh": "x", "auth": "y"}}
    status, body = await alice.call("POST", "/v1/devices", json={
        "device_id": "wp", "platform": "webpush", "push_token": json.dumps(sub)})
    assert status == 400, body
    status, body = await alice.call("POST", "/v1/devices", json={
        "device_id": "ok", "platform": "webhook", "push_token": "https://hooks.example.com/chat"})
    assert status == 204, body  # a name: where it resolves is judged when a push is sent
    assert endpoints.records == []


async def test_the_allow_list_opens_loopback_for_registration(system, session, endpoints):
    (bob,) = await sign_in_users(session, system.url(system.gateways[1]), "bob")
    ok = f"{endpoints.base_url}/hook/ok-bob"
    assert (await bob.call("POST", "/v1/devices", json={
        "device_id": "d", "platform": "webhook", "push_token": ok}))[0] == 204
    status, body = await bob.call("POST", "/v1/devices", json={  # outside the allow-list
        "device_id": "e", "platform": "webhook", "push_token": "http://169.254.169.254/latest/"})
    assert status == 400 and "not a public address" in body["error"]["message"], body


def job(url: str, message_id: str) -> PushRequested:
    return PushRequested("c1", 1, message_id, "alice", "bob", "hook", "webhook", url, "c1", "New message",
                         None, 1, 0)


def sender_for(client: redis.Redis, dead: list[PushFailed], **settings: object) -> PushSender:
    async def publish(topic: str, event: PushFailed) -> None:
        dead.append(event)
    merged = Settings(**{"topic_prefix": f"eg{free_port()}.", "push_allow_http": True, **settings})
    return PushSender(merged, client, providers_for(merged), publish)


async def test_no_hostile_target_is_contacted_when_a_push_is_sent(endpoints, client):
    dead: list[PushFailed] = []
    sender = sender_for(client, dead)  # http allowed (to reach the local server), no allow-list
    targets = [u.replace("https://", "http://") for u in hostile(endpoints.port)]
    outcomes = [await sender.handle(job(url, f"h{n}")) for n, url in enumerate(targets)]
    assert outcomes == ["dead"] * len(targets)
    assert endpoints.records == []  # nothing reached the local server
    assert all("not a public address" in f.error or "user name" in f.error or "https" in f.error
               or "no host" in f.error for f in dead), [f.error for f in dead]
    await sender.close()


async def test_a_name_that_resolves_to_loopback_is_refused_at_send_time(endpoints, client, monkeypatch):
    resolved: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        resolved.append(host)
        return {"hooks.rebind.test": ["127.0.0.1"], "mixed.rebind.test": ["93.184.216.34", "127.0.0.1"]}[host]
    monkeypatch.setattr(push.egress, "resolve", rebinding)
    dead: list[PushFailed] = []
    sender = sender_for(client, dead)
    for n, name in enumerate(["hooks.rebind.test", "mixed.rebind.test"]):
        push.egress.EgressPolicy(allow_http=True).check_url(f"http://{name}:{endpoints.port}/")  # passes
        assert await sender.handle(job(f"http://{name}:{endpoints.port}/hook/ok-rebind", f"r{n}")) == "dead"
    assert resolved == ["hooks.rebind.test", "mixed.rebind.test"]
    assert endpoints.records == [] and all("not a public address" in f.error for f in dead)
    await sender.close()
    monkeypatch.undo()  # the system resolver: this machine's name is a loopback address in /etc/hosts
    name = socket.gethostname()
    assert ipaddress.ip_address((await push.egress.resolve(name, 80))[0]).is_loopback, name
    real = sender_for(client, dead)
    assert await real.handle(job(f"http://{name}:{endpoints.port}/hook/ok-etc-hosts", "r9")) == "dead"
    assert endpoints.records == [] and "not a public address" in dead[-1].error
    await real.close()


async def test_the_allow_list_opens_a_private_range_at_send_time(endpoints, client, monkeypatch):
    async def internal(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]
    monkeypatch.setattr(push.egress, "resolve", internal)
    dead: list[PushFailed] = []
    sender = sender_for(client, dead, push_allow_cidrs="127.0.0.0/8")
    url = f"http://hooks.internal.test:{endpoints.port}/hook/ok-allowed"
    assert await sender.handle(job(url, "a1")) == "sent", dead
    (hit,) = endpoints.of("webhook", "ok-allowed")
    assert hit.headers["Host"] == f"hooks.internal.test:{endpoints.port}"  # the name, not the address
    assert await sender.handle(job(url.replace("http:", "https:").replace("hooks.internal.test", "169.254.169.254"),
                                   "a2")) == "dead"  # outside the range
    await sender.close()
