"""The web client's creates carry an idempotency key and are retried with it when the answer is
lost (issue 13, item 7): the group is made once. In headless Chromium, as tests/e2e/test_web_client.py."""

from __future__ import annotations

import json

import pytest

from tests.client import Client, eventually, uid
from tests.e2e import test_web_client as web
from tests.e2e.test_web_client import Person, new_chat
from tests.support import System

pytestmark = web.pytestmark  # Chromium present
browser = web.browser  # the module's browser fixture


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-web-retry"))
    system.start_worker()
    system.start_gateway()
    yield system
    system.stop()


async def test_a_group_whose_answer_was_lost_is_made_once_by_the_clients_retry(system, browser, session):
    alice_id, bob_id = uid("alice"), uid("bob")
    alice = await Person.sign_in(browser, system.url(), alice_id)
    keys: list[str | None] = []

    async def lose_the_first_answer(route) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) > 1:
            await route.continue_()
            return
        await route.fetch()  # the server makes the group; its answer never reaches the page
        await route.fulfill(status=503, content_type="application/json", body=json.dumps(
            {"error": {"code": "unavailable", "message": "the stream workers did not answer in time"}}))

    await alice.page.route("**/v1/conversations", lose_the_first_answer)
    cid = await new_chat(alice, name="Lost answer", members=(bob_id,))
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]  # retried, with the same key
    first_key = keys[0]
    api = await Client.sign_in(session, system.url(), alice_id)
    status, body = await api.call("GET", "/v1/conversations")
    assert [c["conversation_id"] for c in body["conversations"] if c["name"] == "Lost answer"] == [cid]

    keys.clear()  # another group: another key
    await alice.page.unroute("**/v1/conversations")
    await alice.page.route("**/v1/conversations", lambda route: (
        keys.append(route.request.headers.get("idempotency-key")) if route.request.method == "POST" else None,
        route.continue_())[1])
    await new_chat(alice, name="Second", members=(bob_id,))
    await eventually(lambda: len(keys) == 1, 10, "the second create")
    assert keys[0] and keys[0] != first_key
    await alice.close()
