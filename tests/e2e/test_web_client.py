"""The web client (gateway/static) in headless Chromium against the running system: two browser
contexts as two users sign in, chat, see ticks, typing and presence, and one goes offline and
catches up. Debian's /usr/bin/chromium, driven by Playwright (never its own browser download).
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import pytest
import pytest_asyncio

from tests.client import Client, sign_in_users, uid
from tests.support import System

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1200, "height": 760}
WAIT_MS = 15_000
CLEARED_MS = 4_000  # well under the 10 s a typing indicator lives without a refresh

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is absent (make test installs Debian's chromium)"),
]


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    # A short presence debounce, so a closed browser reads offline within seconds.
    system = System(stack, tmp_path_factory.mktemp("e2e-web"), CHAT_PRESENCE_DEBOUNCE_S="1")
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
def expect():
    from playwright.async_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


class Person:
    """One user in one browser context (a browser profile: its own localStorage and device id)."""

    def __init__(self, context, page, user_id: str) -> None:
        self.context, self.page, self.user_id = context, page, user_id
        self.csp_violations: list[str] = []
        page.on("console", lambda m: self.csp_violations.append(m.text) if "Content Security Policy" in m.text else None)

    @classmethod
    async def sign_in(cls, browser, base_url: str, user_id: str, viewport=DESKTOP) -> "Person":
        context = await browser.new_context(viewport=viewport, base_url=base_url)
        page = await context.new_page()
        await page.goto("/")
        await page.fill("#signin-user", user_id)
        await page.click("#signin-form button[type=submit]")
        await page.wait_for_selector("#main:not([hidden])")
        await page.wait_for_selector("body[data-connection='online']", state="attached", timeout=WAIT_MS)
        return cls(context, page, user_id)

    def conv(self, conversation_id: str):
        return self.page.locator(f'#conversations li[data-id="{conversation_id}"]')

    async def open(self, conversation_id: str) -> None:
        await self.conv(conversation_id).click()
        await self.page.wait_for_selector("#chat-pane:not([hidden])")

    async def send(self, text: str) -> None:
        await self.page.fill("#message-input", text)
        await self.page.press("#message-input", "Enter")

    def message(self, text: str):
        return self.page.locator("#message-list li.msg", has_text=text)

    def seq(self, seq: int):
        return self.page.locator(f'#message-list li.msg[data-seq="{seq}"]')

    async def close(self) -> None:
        """Closes the profile; nothing the page did may have been refused by the CSP."""
        await self.context.close()
        assert self.csp_violations == [], self.csp_violations


async def test_pages_and_answers_carry_the_security_headers(system, session):
    for path in ("/", "/static/app.js", "/v1", "/healthz", "/v1/conversations"):
        async with session.get(f"{system.url()}{path}") as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff", path
            assert r.headers["Referrer-Policy"] == "no-referrer", path
            csp = r.headers["Content-Security-Policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self';" in csp, path
            assert "unsafe-inline" not in csp, path


SCRIPT_REACH = """() => JSON.stringify({
  local: Object.entries(localStorage), session: Object.entries(sessionStorage), cookie: document.cookie,
  api: Object.entries(window.chat.api), socket: Object.keys(window.chat.socket).map((k) => [k, String(window.chat.socket[k])]),
})"""


async def test_the_session_token_is_out_of_reach_of_the_pages_script(system, browser, expect):
    """Issue 13 item 5: after sign-in no storage the page's script reads holds the token, nor
    does ``document.cookie``: the session is an HttpOnly, SameSite=Strict cookie. It survives a
    reload, and signing out clears it."""
    alice = await Person.sign_in(browser, system.url(), uid("alice"))
    try:
        cookies = {c["name"]: c for c in await alice.context.cookies()}
        cookie = cookies["chat_session"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"], cookie["secure"]) == (True, "Strict", "/", False)
        token = cookie["value"]
        header, claims, signature = token.split(".")
        reach = await alice.page.evaluate(SCRIPT_REACH)
        for part in (token, claims, signature):
            assert part not in reach, reach
        assert "chat_session" not in reach and "token" not in reach.lower(), reach
        await alice.page.reload()
        await alice.page.wait_for_selector("body[data-connection='online']", state="attached", timeout=WAIT_MS)
        await expect(alice.page.locator("#main")).to_be_visible()
        await alice.page.click("#sign-out")
        await expect(alice.page.locator("#signin")).to_be_visible()
        assert "chat_session" not in {c["name"] for c in await alice.context.cookies()}
    finally:
        await alice.close()


def tiny_png() -> bytes:
    """A valid 2x2 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + b"\x12\x8c\x7e" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


async def new_chat(person: Person, *, peer: str | None = None, name: str = "", members: tuple[str, ...] = ()) -> str:
    """Create a chat through the dialog; returns the opened conversation's id."""
    page = person.page
    await page.click("#new-chat")
    if peer is not None:
        await page.fill("#new-peer", peer)
    else:
        await page.check("#new-form input[value=group]")
        await page.fill("#new-name", name)
        await page.fill("#new-members", ", ".join(members))
    await page.click("#new-create")
    active = page.locator("#conversations li.active")
    await active.wait_for(state="attached")
    return await active.get_attribute("data-id")


async def test_two_users_exchange_messages_with_delivered_and_read_ticks(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    cid = await new_chat(alice, peer=bob_id)
    await expect(alice.page.locator("#chat-title")).to_have_text(bob_id)

    await alice.send("Hello Bob")
    mine = alice.message("Hello Bob")
    await expect(mine).to_have_attribute("data-seq", "1")
    # Bob's client is online: it receives the message and says delivered, without opening it.
    await expect(mine).to_have_attribute("data-status", "delivered")
    await expect(bob.conv(cid)).to_contain_text("Hello Bob")
    await expect(bob.conv(cid).locator(".badge")).to_have_text("1")

    await bob.open(cid)
    await expect(bob.message("Hello Bob")).to_be_visible()
    await expect(bob.conv(cid).locator(".badge")).to_have_count(0)
    await expect(mine).to_have_attribute("data-status", "read")
    await expect(mine.locator(".tick.read")).to_have_text("✓✓")

    await bob.send("Hi Alice!")
    reply = bob.message("Hi Alice!")
    await expect(alice.message("Hi Alice!")).to_be_visible()
    await expect(reply).to_have_attribute("data-status", "read")  # Alice has the chat open
    assert await bob.page.locator("#message-list li.msg").count() == 2  # no duplicates
    for person in (alice, bob):
        await person.close()


async def test_group_chat_list_order_unread_badges_and_read_by(system, browser, expect, session):
    alice_id, bob_id, carol_id = uid("alice"), uid("bob"), uid("carol")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    carol = await Client.sign_in(session, system.url(), carol_id)
    group = await new_chat(alice, name="Weekend trip", members=(bob_id, carol_id))
    await expect(alice.page.locator("#chat-subtitle")).to_contain_text("3 members")
    older = (await carol.create_group("older", [bob_id]))["conversation_id"]
    await carol.call("POST", f"/v1/conversations/{older}/messages", json={"client_msg_id": "o1", "body": "old news"})
    for i in range(3):
        await alice.send(f"plan {i}")
    # Bob's list: the group (latest activity) above the older chat, with 3 unread.
    await expect(bob.page.locator("#conversations li.conv").first).to_have_attribute("data-id", group)
    await expect(bob.conv(group).locator(".badge")).to_have_text("3")
    await expect(bob.conv(group)).to_contain_text(f"{alice_id}: plan 2")
    await expect(bob.conv(older).locator(".badge")).to_have_text("1")
    await bob.open(group)
    last = alice.message("plan 2")
    await expect(alice.page.locator(".readby")).to_have_text("Read by 1 of 2")
    assert await last.get_attribute("data-status") == "sent"  # Carol has no device yet
    carol_phone = await carol.device("phone")  # a protocol client: she reads everything
    await carol_phone.send({"type": "receipt", "conversation_id": group, "seq": 3, "status": "read"})
    await expect(last).to_have_attribute("data-status", "read")
    await expect(alice.page.locator(".readby")).to_have_text("Read by 2 of 2")
    await carol_phone.close()
    await expect(bob.page.locator("#message-list .sender").first).to_have_text(alice_id)
    for person in (alice, bob):
        await person.close()


async def test_history_loads_older_pages_when_scrolling_up(system, browser, expect, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("long", [bob.user_id]))["conversation_id"]
    for i in range(1, 76):
        status, _ = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                     json={"client_msg_id": f"h{i}", "body": f"history {i}"})
        assert status == 202
    reader = await Person.sign_in(browser, system.url(), bob.user_id)
    await reader.open(cid)
    await expect(reader.seq(75).locator(".body")).to_have_text("history 75")
    assert await reader.seq(1).count() == 0  # only the newest page so far
    for _ in range(10):
        if await reader.seq(1).count():
            break
        await reader.page.locator("#messages").evaluate("el => { el.scrollTop = 0; }")
        await reader.page.wait_for_timeout(300)
    await expect(reader.seq(1).locator(".body")).to_have_text("history 1")
    await expect(reader.page.locator("#history-status")).to_have_text("Beginning of the conversation")
    seqs = await reader.page.locator("#message-list li.msg").evaluate_all("els => els.map(e => +e.dataset.seq)")
    assert seqs == list(range(1, 76))
    await reader.close()


async def test_offline_user_catches_up_on_return_and_after_a_dropped_connection(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    cid = await new_chat(alice, peer=bob_id)
    await alice.send("before")
    await expect(bob.conv(cid)).to_contain_text("before")
    await bob.open(cid)
    await expect(alice.message("before")).to_have_attribute("data-status", "read")

    await bob.page.close()  # Bob goes offline (his browser profile keeps its sync cursors)
    for i in range(3):
        await alice.send(f"while away {i}")
    await expect(alice.message("while away 2")).to_have_attribute("data-status", "sent")
    await alice.page.wait_for_timeout(500)
    assert await alice.message("while away 0").get_attribute("data-status") == "sent"  # nobody received it

    bob.page = await bob.context.new_page()  # back: same profile, same device id
    await bob.page.goto("/")
    await expect(bob.conv(cid).locator(".badge")).to_have_text("3")
    await expect(alice.message("while away 2")).to_have_attribute("data-status", "delivered")
    await bob.open(cid)
    await expect(bob.message("while away 2")).to_be_visible()
    await expect(alice.message("while away 2")).to_have_attribute("data-status", "read")

    # The connection drops under an open page: it reconnects by itself and syncs what it missed.
    await bob.context.set_offline(True)
    await bob.page.evaluate("window.chat.socket.drop()")  # what a lost network does to the socket
    await expect(bob.page.locator("#connection")).to_contain_text("Reconnecting")
    await alice.send("during the outage")
    await expect(alice.message("during the outage")).to_have_attribute("data-status", "sent")
    await bob.page.wait_for_timeout(1500)  # reconnect attempts fail while offline
    assert await bob.message("during the outage").count() == 0
    assert await bob.page.get_attribute("body", "data-connection") != "online"
    await bob.context.set_offline(False)
    await expect(bob.message("during the outage")).to_be_visible()
    await expect(alice.message("during the outage")).to_have_attribute("data-status", "read")
    seqs = await bob.page.locator("#message-list li.msg").evaluate_all("els => els.map(e => +e.dataset.seq)")
    assert seqs == [1, 2, 3, 4, 5]
    for person in (alice, bob):
        await person.close()


async def test_attached_image_previews_and_a_missing_upload_endpoint_is_reported(system, browser, expect, tmp_path):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    await new_chat(alice, peer=bob_id)
    png = tmp_path / "dot.png"
    png.write_bytes(tiny_png())
    # Whatever this server supports, answer the upload as a server without media does.
    await alice.page.route("**/v1/media", lambda route: route.fulfill(
        status=405, content_type="application/json",
        body='{"error":{"code":"bad_request","message":"Method Not Allowed"}}'))
    await alice.page.set_input_files("#attach-input", str(png))
    await expect(alice.page.locator("#attachment img")).to_be_visible()
    await alice.send("look")
    await expect(alice.page.locator("#composer-error")).to_contain_text("not available on this server yet (HTTP 405)")
    await expect(alice.page.locator("#message-list li.msg")).to_have_count(0)
    await alice.page.click("#attachment button")
    await alice.send("text only")
    await expect(alice.message("text only")).to_have_attribute("data-seq", "1")
    await alice.close()


async def test_phone_sized_screen_shows_one_pane_at_a_time(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id, viewport=PHONE)
    cid = await new_chat(alice, peer=bob_id)
    await expect(alice.page.locator("#chat-pane")).to_be_visible()
    await expect(alice.page.locator("#sidebar")).to_be_hidden()
    await alice.send("from my phone")
    await expect(alice.message("from my phone")).to_have_attribute("data-status", "sent")
    width = await alice.page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # nothing overflows sideways
    await alice.page.click("#back")
    await expect(alice.page.locator("#sidebar")).to_be_visible()
    await expect(alice.conv(cid)).to_contain_text("You: from my phone")
    await alice.close()


async def test_typing_indicator_shows_and_clears(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    cid = await new_chat(alice, peer=bob_id)
    await expect(bob.conv(cid)).to_be_visible()
    typing = bob.page.locator("#typing")
    await alice.page.type("#message-input", "typing something", delay=20)
    await expect(bob.conv(cid).locator(".preview.is-typing")).to_have_text("typing…")  # in the list
    await bob.open(cid)
    await expect(typing).to_have_text(f"{alice_id} is typing…")
    await alice.page.press("#message-input", "Enter")  # sending stops typing
    await expect(bob.message("typing something")).to_be_visible()
    await expect(typing).to_have_text("", timeout=CLEARED_MS)
    await alice.page.type("#message-input", "again", delay=20)
    await expect(typing).to_have_text(f"{alice_id} is typing…")
    await alice.page.click("#messages")  # the composer loses focus: typing false
    await expect(typing).to_have_text("", timeout=CLEARED_MS)
    await alice.page.fill("#message-input", "")
    await alice.page.type("#message-input", "x", delay=20)
    await expect(typing).to_have_text(f"{alice_id} is typing…")
    await alice.page.press("#message-input", "Backspace")  # emptied: typing false
    await expect(typing).to_have_text("", timeout=CLEARED_MS)
    assert await bob.page.locator("#message-list li.msg").count() == 1
    for person in (alice, bob):
        await person.close()


async def test_presence_dots_follow_the_peer(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    cid = await new_chat(alice, peer=bob_id)
    await expect(alice.conv(cid).locator(".dot")).to_have_attribute("data-presence", "online")
    await expect(alice.page.locator("#chat-subtitle")).to_have_text("online")
    await bob.close()
    await expect(alice.conv(cid).locator(".dot")).to_have_attribute("data-presence", "offline")
    await expect(alice.page.locator("#chat-subtitle")).to_contain_text("last seen")
    await alice.close()


async def test_screenshots_of_the_main_views(system, browser, expect, session, tmp_path):
    """Sign-in, the conversation list beside a chat with ticks and typing, and a phone-sized
    list and chat, as PNGs: to tmp_path, or to docs/screenshots with `make screenshots`."""
    out = Path(os.environ.get("CHAT_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    names = {n: n if os.environ.get("CHAT_SCREENSHOTS_DIR") else uid(n) for n in ("alice", "bob", "carol")}
    fresh = await browser.new_context(viewport=DESKTOP, base_url=system.url())
    page = await fresh.new_page()
    await page.goto("/")
    await page.fill("#signin-user", names["alice"])
    await page.screenshot(path=out / "sign-in.png")
    await fresh.close()

    carol = await Client.sign_in(session, system.url(), names["carol"])
    group = (await carol.create_group("Weekend trip", [names["alice"], names["bob"]]))["conversation_id"]
    for i, body in enumerate(["Who is in for hiking on Saturday?", "The forecast says sunny, 22 degrees",
                              "Meeting point: the old bridge"]):
        await carol.call("POST", f"/v1/conversations/{group}/messages", json={"client_msg_id": f"g{i}", "body": body})
    alice = await Person.sign_in(browser, system.url(), names["alice"])
    bob = await Person.sign_in(browser, system.url(), names["bob"], viewport=PHONE)
    direct = await new_chat(alice, peer=names["bob"])
    await alice.send("Hi Bob! Are you coming on Saturday?")
    await expect(bob.conv(direct)).to_be_visible()
    await bob.open(direct)
    await bob.send("Yes! I will bring the map and some snacks.")
    await alice.send("Great, see you at 9 at the bridge")
    await expect(alice.message("see you at 9")).to_have_attribute("data-status", "read")
    await expect(bob.message("bring the map")).to_have_attribute("data-status", "read")
    dm = (await carol.call("POST", "/v1/conversations", json={"type": "direct", "peer": names["alice"]}))[1]
    await carol.call("POST", f"/v1/conversations/{dm['conversation_id']}/messages",
                     json={"client_msg_id": "d1", "body": "Can you send me the photos from last time?"})
    await bob.page.type("#message-input", "Should I bring", delay=10)
    await expect(alice.conv(group).locator(".badge")).to_have_text("3")
    await expect(alice.conv(dm["conversation_id"]).locator(".badge")).to_have_text("1")
    await expect(alice.page.locator("#typing")).to_have_text(f"{names['bob']} is typing…")
    await expect(alice.conv(direct).locator(".dot")).to_have_attribute("data-presence", "online")
    await alice.page.screenshot(path=out / "conversations-and-chat.png")
    await bob.page.screenshot(path=out / "phone-chat.png")
    await bob.page.click("#back")
    await expect(bob.page.locator("#sidebar")).to_be_visible()
    await bob.page.screenshot(path=out / "phone-conversations.png")
    for name in ("sign-in", "conversations-and-chat", "phone-chat", "phone-conversations"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for person in (alice, bob):
        await person.close()
