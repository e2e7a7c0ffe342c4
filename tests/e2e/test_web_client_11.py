"""The web client's protocol 1.1 features in headless Chromium against the running system: the
message menu (edit, delete, reply, react), mentions, changes applied live and replayed by sync
after a reconnect, search, mute, profiles and blocking. Two browser profiles where what one user
does must show on another's screen. A feature whose backend is not on main yet is skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.client import Client, sign_in_users, uid
from tests.e2e.test_web_client import (  # noqa: F401  (fixtures: system, browser, expect)
    DESKTOP, PHONE, Person, browser, expect, new_chat, system, tiny_png)

pytestmark = [pytest.mark.browser]

# Which parts of the 1.1 backend were on main at the last merge (PROTOCOL.md "Additions in 1.1").
LANDED = {"changes": True, "search": True, "mute": True, "profiles": True, "blocking": True}


FLASH = re.compile(r"\bflash\b")  # the message a jump landed on


def needs(*parts: str):
    """Skip a test while a part of the backend it drives is missing from main."""
    missing = [p for p in parts if not LANDED[p]]
    return pytest.mark.skip(reason="backend not merged yet") if missing else pytest.mark.browser


async def menu(person: Person, locator, action: str) -> None:
    """Open a message's menu with a right click and choose an action (reply, react, edit, delete)."""
    await locator.locator(".bubble").click(button="right")
    await person.page.click(f'#msg-menu [data-action="{action}"]')


async def react(person: Person, locator, emoji: str) -> None:
    await locator.locator(".bubble").click(button="right")
    await person.page.click(f'#msg-menu .quick [data-emoji="{emoji}"]')


async def pair(system, browser):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    cid = await new_chat(alice, peer=bob_id)
    await expect_visible(bob.conv(cid))
    return alice, bob, cid


async def expect_visible(locator) -> None:
    await locator.wait_for(state="visible", timeout=15_000)


@needs("changes")
async def test_an_edit_shows_as_edited_on_every_screen(system, browser, expect):
    alice, bob, cid = await pair(system, browser)
    await bob.open(cid)
    await alice.send("See you at 9")
    await expect(bob.seq(1).locator(".body")).to_have_text("See you at 9")
    await menu(alice, alice.seq(1), "edit")
    editor = alice.page.locator("#message-list .edit-input")
    await expect(editor).to_have_value("See you at 9")
    await editor.fill("See you at 10")
    await expect(editor).to_be_focused()
    await editor.press("Enter")
    await expect(editor).to_have_count(0)
    for person in (alice, bob):
        await expect(person.seq(1).locator(".body")).to_have_text("See you at 10")
        await expect(person.seq(1).locator(".edited")).to_have_text("edited")
    await expect(alice.conv(cid)).to_contain_text("You: See you at 10")
    # Text stays text: an edit to markup shows the markup.
    await menu(alice, alice.seq(1), "edit")
    await editor.fill("<b>bold</b> <img src=x>")
    await editor.press("Enter")
    await expect(bob.seq(1).locator(".body")).to_have_text("<b>bold</b> <img src=x>")
    assert await bob.seq(1).locator(".body b, .body img").count() == 0
    # Only the author may edit: Bob's menu on Alice's message has no Edit (and no Delete).
    await bob.seq(1).locator(".bubble").click(button="right")
    await expect(bob.page.locator("#msg-menu [data-action=reply]")).to_be_visible()
    assert await bob.page.locator("#msg-menu [data-action=edit], #msg-menu [data-action=delete]").count() == 0
    for person in (alice, bob):
        await person.close()


@needs("changes")
async def test_a_deletion_leaves_a_tombstone_and_a_group_admin_deletes_any_message(system, browser, expect):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    group = await new_chat(alice, name="Plans", members=(bob_id,))  # Alice is its admin
    await alice.send("mine to delete")
    await expect(bob.conv(group)).to_contain_text("mine to delete")
    await bob.open(group)
    await bob.send("bob wrote this")
    await expect(alice.seq(2).locator(".body")).to_have_text("bob wrote this")

    await menu(alice, alice.seq(1), "delete")
    await alice.page.click("#delete-confirm")
    for person in (alice, bob):
        await expect(person.seq(1).locator(".body.deleted")).to_contain_text("message deleted")
        await expect(person.seq(1).locator(".msg-menu-btn")).to_have_count(0)  # nothing more to do to it
    await menu(alice, alice.seq(2), "delete")  # the admin deletes Bob's message
    await alice.page.click("#delete-confirm")
    await expect(bob.seq(2).locator(".body.deleted")).to_be_visible()
    await expect(bob.conv(group)).to_contain_text("message deleted")
    assert "bob wrote this" not in await bob.page.locator("#message-list").inner_text()
    for person in (alice, bob):
        await person.close()


@needs("changes")
async def test_reactions_show_counts_highlight_mine_and_toggle(system, browser, expect):
    alice, bob, cid = await pair(system, browser)
    await bob.open(cid)
    await alice.send("Pizza tonight?")
    await expect(bob.seq(1)).to_be_visible()
    await react(bob, bob.seq(1), "👍")
    chip = alice.seq(1).locator('.reaction[data-emoji="👍"]')
    await expect(chip.locator(".count")).to_have_text("1")
    await expect(chip).to_have_attribute("aria-pressed", "false")
    await expect(bob.seq(1).locator('.reaction[data-emoji="👍"]')).to_have_attribute("aria-pressed", "true")
    await chip.click()  # Alice joins in
    await expect(bob.seq(1).locator('.reaction[data-emoji="👍"] .count')).to_have_text("2")
    await expect(chip).to_have_attribute("aria-pressed", "true")
    await chip.click()  # and takes it back
    await expect(bob.seq(1).locator('.reaction[data-emoji="👍"] .count')).to_have_text("1")
    # The full picker: "React" opens it.
    await menu(alice, alice.seq(1), "react")
    await alice.page.click('#msg-menu .picker [data-emoji="🎉"]')
    await expect(bob.seq(1).locator('.reaction[data-emoji="🎉"] .count')).to_have_text("1")
    for person in (alice, bob):
        await person.close()


@needs("changes")
async def test_a_reply_quotes_its_message_and_the_quote_jumps_to_it(system, browser, expect, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("long", [bob.user_id]))["conversation_id"]
    for i in range(1, 61):
        await alice.call("POST", f"/v1/conversations/{cid}/messages", json={"client_msg_id": f"r{i}", "body": f"line {i}"})
    reader = await Person.sign_in(browser, system.url(), bob.user_id)
    await reader.open(cid)
    await expect(reader.seq(60)).to_be_visible()
    await menu(reader, reader.seq(60), "reply")
    await expect(reader.page.locator("#reply-preview .quote-body")).to_have_text("line 60")
    await reader.send("answering the last line")
    await expect(reader.page.locator("#reply-preview")).to_be_hidden()
    await expect(reader.seq(61).locator(".quote-body")).to_have_text("line 60")
    # A reply to a message far above, not loaded yet: its quote loads history and shows it.
    status, _ = await alice.call("POST", f"/v1/conversations/{cid}/messages",
                                 json={"client_msg_id": "back", "body": "about the first line", "reply_to": 1})
    assert status == 202
    quote = reader.seq(62).locator(".quote")
    await expect(quote.locator(".quote-body")).to_have_text("line 1")
    assert await reader.seq(1).count() == 0
    await quote.click()
    await expect(reader.seq(1)).to_be_in_viewport()
    await expect(reader.seq(1)).to_have_class(FLASH)
    await reader.close()


@needs("changes")
async def test_mentions_complete_send_ids_highlight_and_badge(system, browser, expect, session):
    alice_id, bob_id, carol_id = uid("alice"), uid("bob"), uid("carol")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    bob = await Person.sign_in(browser, system.url(), bob_id)
    await Client.sign_in(session, system.url(), carol_id)
    group = await new_chat(alice, name="Team", members=(bob_id, carol_id))
    await expect(bob.conv(group)).to_be_visible()
    await alice.page.type("#message-input", "thanks @" + bob_id[:2], delay=10)
    options = alice.page.locator("#mention-list .option")
    await expect(options).to_have_count(1)
    await expect(options.first).to_have_attribute("data-user", bob_id)
    await alice.page.press("#message-input", "Enter")  # picks, does not send
    await expect(alice.page.locator("#message-input")).to_have_value(f"thanks @{bob_id} ")
    await alice.page.type("#message-input", "for the map", delay=10)
    await alice.page.press("#message-input", "Enter")
    await expect(bob.conv(group).locator(".mention-badge")).to_be_visible()
    await bob.open(group)
    await expect(bob.seq(1).locator(".mention.self")).to_have_text(f"@{bob_id}")
    await expect(bob.conv(group).locator(".mention-badge")).to_have_count(0)
    await expect(alice.seq(1).locator(".mention")).to_have_text(f"@{bob_id}")
    # Without a pick, "@bob" in the text is no mention.
    await alice.page.fill("#message-input", "@bo is not a mention")
    await alice.page.press("#message-input", "Escape")
    await alice.page.press("#message-input", "Enter")
    await expect(bob.seq(2).locator(".body")).to_have_text("@bo is not a mention")
    assert await bob.seq(2).locator(".mention").count() == 0
    for person in (alice, bob):
        await person.close()


@needs("changes")
async def test_changes_made_while_offline_are_replayed_on_reconnect(system, browser, expect):
    alice, bob, cid = await pair(system, browser)
    await bob.open(cid)
    for text in ("first", "second", "third"):
        await alice.send(text)
    await expect(bob.seq(3)).to_be_visible()
    await bob.context.set_offline(True)
    await bob.page.evaluate("window.chat.socket.drop()")
    await expect(bob.page.locator("#connection")).to_contain_text("Reconnecting")
    await menu(alice, alice.seq(1), "edit")
    await alice.page.locator("#message-list .edit-input").fill("first, edited offline")
    await alice.page.press("#message-list .edit-input", "Enter")
    await react(alice, alice.seq(2), "❤️")
    await menu(alice, alice.seq(3), "delete")
    await alice.page.click("#delete-confirm")
    await expect(alice.seq(3).locator(".body.deleted")).to_be_visible()
    await bob.page.wait_for_timeout(500)
    assert await bob.seq(1).locator(".body").inner_text() == "first"
    await bob.context.set_offline(False)
    await expect(bob.seq(1).locator(".body")).to_have_text("first, edited offline")
    await expect(bob.seq(1).locator(".edited")).to_be_visible()
    await expect(bob.seq(2).locator('.reaction[data-emoji="❤️"] .count')).to_have_text("1")
    await expect(bob.seq(3).locator(".body.deleted")).to_be_visible()
    cursors = await bob.page.evaluate("window.chat.state.changeCursors")
    assert cursors[cid] == 3
    for person in (alice, bob):
        await person.close()


@needs("search")
async def test_search_marks_the_match_and_a_result_opens_the_message(system, browser, expect, session):
    alice, bob = await sign_in_users(session, system.url(), "alice", "bob")
    cid = (await alice.create_group("Trip notes", [bob.user_id]))["conversation_id"]
    word = f"lighthouse{uid('x')[-6:]}"
    bodies = {2: f"The {word} tour starts at ten"}
    for i in range(1, 71):
        await alice.call("POST", f"/v1/conversations/{cid}/messages",
                         json={"client_msg_id": f"s{i}", "body": bodies.get(i, f"note {i}")})
    reader = await Person.sign_in(browser, system.url(), bob.user_id)
    await reader.page.fill("#search-input", word[:-2])  # the last word also matches as a prefix
    result = reader.page.locator("#search-results li.result")
    await expect(result).to_have_count(1)
    await expect(result.locator("mark")).to_have_text(word[:-2])
    await expect(result).to_contain_text("Trip notes")
    await expect(reader.page.locator("#conversations")).to_be_hidden()
    await result.click()
    await expect(reader.seq(2)).to_be_in_viewport()
    await expect(reader.seq(2)).to_have_class(FLASH)
    await reader.page.fill("#search-input", "zzzznothing")
    await expect(reader.page.locator("#search-status")).to_have_text("No messages found")
    await reader.page.fill("#search-input", "")
    await reader.page.press("#search-input", "Enter")
    await expect(reader.page.locator("#conversations")).to_be_visible()
    await reader.close()


@needs("mute")
async def test_mute_from_the_header_shows_in_the_list_and_survives_a_reload(system, browser, expect):
    alice, bob, cid = await pair(system, browser)
    await alice.page.click("#chat-more")
    await alice.page.locator("#chat-menu li", has_text="Mute until I unmute").click()
    await expect(alice.page.locator("#chat-muted")).to_be_visible()
    await expect(alice.conv(cid).locator(".muted-mark")).to_be_visible()
    await alice.page.reload()
    await expect(alice.conv(cid).locator(".muted-mark")).to_be_visible()  # from GET /v1/conversations
    await alice.open(cid)
    await alice.page.click("#chat-more")
    await alice.page.locator("#chat-menu li", has_text="Unmute notifications").click()
    await expect(alice.conv(cid).locator(".muted-mark")).to_have_count(0)
    await expect(alice.page.locator("#chat-muted")).to_be_hidden()
    for person in (alice, bob):
        await person.close()


@needs("changes", "mute")
async def test_the_list_counts_unread_mentions_from_the_server(system, browser, expect, session):
    alice, carol = await sign_in_users(session, system.url(), "alice", "carol")
    bob_id = uid("bob")
    group = (await alice.create_group("Team", [bob_id, carol.user_id]))["conversation_id"]
    for n, (client, body, mentions) in enumerate([(alice, f"@{bob_id} can you check?", [bob_id]),
                                                  (carol, "unrelated", []),
                                                  (carol, f"@{bob_id} and the map", [bob_id])]):
        status, _ = await client.call("POST", f"/v1/conversations/{group}/messages",
                                      json={"client_msg_id": f"m{n}", "body": body, "mentions": mentions})
        assert status == 202
    bob = await Person.sign_in(browser, system.url(), bob_id)  # a fresh page: the list is all it knows
    badge = bob.conv(group).locator(".mention-badge")
    await expect(badge).to_have_text("@2")
    await expect(bob.conv(group).locator(".badge")).to_have_text("3")
    await bob.open(group)
    await expect(badge).to_have_count(0)
    await bob.page.reload()
    await expect(bob.conv(group)).to_be_visible()
    await expect(badge).to_have_count(0)  # read on the server too
    await bob.close()


@needs("profiles")
async def test_a_new_display_name_and_avatar_reach_the_other_user(system, browser, expect, tmp_path):
    alice, bob, cid = await pair(system, browser)
    await bob.open(cid)
    png = tmp_path / "me.png"
    png.write_bytes(tiny_png())
    await alice.page.click("#me")
    await alice.page.set_input_files("#profile-file", str(png))
    await alice.page.fill("#profile-name", "Alice Liddell")
    await alice.page.click("#profile-save")
    await expect(alice.page.locator("#profile-dialog")).to_be_hidden()
    await expect(alice.page.locator("#me .me-name")).to_have_text("Alice Liddell")
    await expect(bob.page.locator("#chat-title")).to_have_text("Alice Liddell")  # a profile frame, live
    await expect(bob.conv(cid).locator(".conv-title")).to_have_text("Alice Liddell")
    await expect(bob.conv(cid).locator(".avatar-img")).to_be_visible()
    await bob.page.reload()  # and from GET /v1/users after a reload
    await expect(bob.conv(cid).locator(".conv-title")).to_have_text("Alice Liddell")
    await expect(bob.conv(cid).locator(".avatar-img")).to_be_visible()
    for person in (alice, bob):
        await person.close()


@needs("blocking")
async def test_blocking_hides_the_composer_and_refuses_the_peers_messages(system, browser, expect):
    alice, bob, cid = await pair(system, browser)
    await bob.open(cid)
    await alice.page.click("#chat-more")
    await alice.page.locator("#chat-menu li", has_text="Block").click()
    await expect(alice.page.locator("#blocked-banner")).to_contain_text("You blocked")
    await expect(alice.page.locator("#composer")).to_be_hidden()
    await bob.send("are you there?")
    await expect(bob.page.locator(".failure")).to_contain_text("Not sent")
    await alice.page.click("#blocked-banner button")
    await expect(alice.page.locator("#composer")).to_be_visible()
    await bob.page.click(".failure button")  # retry once unblocked
    await expect(alice.message("are you there?")).to_be_visible()
    for person in (alice, bob):
        await person.close()


def gradient_png(rgb_from: tuple[int, int, int], rgb_to: tuple[int, int, int], size: int = 96) -> bytes:
    """A square PNG shading diagonally from one colour to another: a stand-in profile picture."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = bytearray()
    for y in range(size):
        rows.append(0)
        for x in range(size):
            t = (x + y) / (2 * size - 2)
            rows.extend(round(a + (b - a) * t) for a, b in zip(rgb_from, rgb_to))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


async def set_profile(client: Client, name: str, picture: bytes) -> None:
    async with client.session.post(f"{client.base_url}/v1/media", data=picture,
                                   headers={**client.headers, "Content-Type": "image/png"}) as r:
        assert r.status == 201, await r.text()
        media = await r.json()
    status, body = await client.call("PUT", "/v1/users/me", json={"display_name": name, "avatar_media_id": media["media_id"]})
    assert status == 200, body


def shots_dir(tmp_path: Path) -> Path:
    out = Path(os.environ.get("CHAT_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def saved(out: Path, *names: str) -> None:
    for name in names:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def trip(system):
    """The screenshots' world: Alice, Bob and Carol (names and pictures once profiles are on
    main) in a "Weekend trip" group with an edit, a deletion, reactions and a mention, and a
    direct chat from Carol to Alice. Plain names with `make screenshots`, fresh ones otherwise."""
    fixed = bool(os.environ.get("CHAT_SCREENSHOTS_DIR"))
    ids = {n: n if fixed else uid(n) for n in ("alice", "bob", "carol")}
    async with aiohttp.ClientSession() as session:
        alice, bob, carol = [await Client.sign_in(session, system.url(), ids[n]) for n in ("alice", "bob", "carol")]
        if LANDED["profiles"]:
            await set_profile(alice, "Alice Martin", gradient_png((255, 183, 77), (233, 30, 99)))
            await set_profile(bob, "Bob Chen", gradient_png((79, 195, 247), (26, 35, 126)))
            await set_profile(carol, "Carol Diaz", gradient_png((129, 199, 132), (0, 105, 92)))
        group = (await carol.create_group("Weekend trip", [ids["alice"], ids["bob"]]))["conversation_id"]
        base = f"/v1/conversations/{group}/messages"
        alice_name = "Alice Martin" if LANDED["profiles"] else ids["alice"]
        for n, (client, body, extra) in enumerate([
                (carol, "Who is in for hiking on Saturday? 🥾", {}),
                (bob, "Me! I will bring the map", {}),
                (carol, "The forecast says sunny, 22 degrees", {}),
                (carol, "Oops, wrong chat", {}),
                (bob, f"@{alice_name} can you book the cabin for Saturday night?", {"mentions": [ids["alice"]]})]):
            status, ack = await client.call("POST", base, json={"client_msg_id": f"s{n}", "body": body, **extra})
            assert status == 202, ack
        assert (await bob.call("PATCH", f"{base}/2", json={"body": "Me! I will bring the map and a compass"}))[0] == 200
        assert (await carol.call("DELETE", f"{base}/4"))[0] == 204
        for client, seq, emoji in ((alice, 3, "☀️"), (bob, 3, "☀️"), (carol, 2, "🙏"), (alice, 1, "🙌")):
            assert (await client.call("PUT", f"{base}/{seq}/reactions/{emoji}"))[0] == 200
        direct = (await carol.call("POST", "/v1/conversations", json={"type": "direct", "peer": ids["alice"]}))[1]
        await carol.call("POST", f"/v1/conversations/{direct['conversation_id']}/messages",
                         json={"client_msg_id": "d1", "body": "Can you send me the photos from last time?"})
        yield {"ids": ids, "group": group, "direct": direct["conversation_id"]}


@needs("changes")
async def test_screenshots_of_reactions_replies_mentions_and_the_menu(system, browser, expect, trip, tmp_path):
    """Reactions, a reply with a mention, an edit and a deletion; the message menu with its
    picker; a phone composing a reply: to tmp_path, or to docs/screenshots (`make screenshots`)."""
    out = shots_dir(tmp_path)
    ids, group = trip["ids"], trip["group"]
    alice = await Person.sign_in(browser, system.url(), ids["alice"])
    await alice.open(group)
    await menu(alice, alice.seq(5), "reply")
    await alice.page.type("#message-input", "Done! The cabin is ours. Thanks @Bo", delay=5)
    await alice.page.press("#message-input", "Enter")  # picks Bob
    await alice.page.press("#message-input", "Enter")  # sends
    await expect(alice.seq(6).locator(".mention")).to_be_visible()
    await expect(alice.seq(2).locator(".edited")).to_be_visible()
    await alice.page.locator("#message-input").blur()
    await alice.page.mouse.move(5, 400)  # no message hovered
    await alice.page.screenshot(path=out / "reactions-replies-mentions.png")
    await alice.seq(3).hover()  # the menu's button shows on hover
    await alice.seq(3).locator(".msg-menu-btn").click()
    await alice.page.click("#msg-menu .emoji.more")
    await alice.page.screenshot(path=out / "message-menu.png")

    bob = await Person.sign_in(browser, system.url(), ids["bob"], viewport=PHONE)
    await bob.open(group)
    await expect(bob.seq(6)).to_be_visible()
    await menu(bob, bob.seq(3), "reply")
    await bob.page.type("#message-input", "Perfect weather. @Ca", delay=5)
    await expect(bob.page.locator("#mention-list .option")).to_have_count(1)
    await bob.page.screenshot(path=out / "phone-reply-mention.png")
    saved(out, "reactions-replies-mentions", "message-menu", "phone-reply-mention")
    for person in (alice, bob):
        await person.close()


@needs("changes", "search")
async def test_screenshots_of_search(system, browser, expect, trip, tmp_path):
    out = shots_dir(tmp_path)
    alice = await Person.sign_in(browser, system.url(), trip["ids"]["alice"])
    await alice.page.fill("#search-input", "saturday")
    await expect(alice.page.locator("#search-results li.result")).to_have_count(2)
    await alice.page.locator("#search-results li.result").last.click()
    await expect(alice.seq(1)).to_have_class(FLASH)
    await alice.page.mouse.move(5, 700)
    await alice.page.screenshot(path=out / "search.png")
    saved(out, "search")
    await alice.close()


@needs("changes", "mute", "blocking", "profiles")
async def test_screenshots_of_chat_options_and_the_profile(system, browser, expect, trip, tmp_path):
    out = shots_dir(tmp_path)
    alice = await Person.sign_in(browser, system.url(), trip["ids"]["alice"])
    await alice.open(trip["direct"])
    await alice.page.click("#chat-more")
    await alice.page.locator("#chat-menu li", has_text="Mute until I unmute").click()
    await expect(alice.conv(trip["direct"]).locator(".muted-mark")).to_be_visible()
    await alice.page.click("#chat-more")
    await alice.page.screenshot(path=out / "chat-options.png")
    await alice.page.keyboard.press("Escape")
    await alice.page.click("#me")
    await expect(alice.page.locator("#profile-avatar .avatar-img")).to_be_visible()
    await alice.page.screenshot(path=out / "profile.png")
    saved(out, "chat-options", "profile")
    await alice.close()
