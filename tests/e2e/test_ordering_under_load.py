"""Ordering under concurrency: three workers, three gateways, three senders writing into one
group at once. Every device must see one order, the same one the acks and history give."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.client import Client, Device, eventually, first_seen, full_history, uid
from tests.support import System, wait_workers

PARTITIONS = GATEWAYS = WORKERS = 3
PER_SENDER = 200  # the default send burst: no sender is rate limited
TOTAL = GATEWAYS * PER_SENDER


@pytest.fixture(scope="module")
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("e2e-ordering"), partitions=PARTITIONS)
    for _ in range(WORKERS):
        system.start_worker()
    for _ in range(GATEWAYS):
        system.start_gateway()  # waits for /healthz 200
    wait_workers(system, WORKERS)  # and for the rebalances after the first worker covered all
    yield system
    system.stop()


def body(sender: int, n: int) -> str:
    return f"sender {sender} message {n} " + "x" * (n % 7)


def no_errors(device: Device) -> None:
    errors = device.of_type("error")
    assert not errors, f"{device.user_id}/{device.device_id} got error frames: {errors[:5]}"


async def test_three_senders_on_three_gateways_one_order_everywhere(system, session):
    urls = [system.url(g) for g in system.gateways]
    senders = [await Client.sign_in(session, urls[i], uid(f"sender{i}")) for i in range(GATEWAYS)]
    readers = [await Client.sign_in(session, urls[i], uid(f"reader{i}")) for i in range(GATEWAYS)]
    group = await senders[0].create_group("load", [c.user_id for c in senders[1:] + readers])
    cid = group["conversation_id"]
    assert len(group["members"]) == 6

    sending = [await senders[i].device("phone", urls[i]) for i in range(GATEWAYS)]  # one sender per gateway
    reading = [await readers[i].device("phone", urls[i]) for i in range(GATEWAYS)]
    extra = await senders[0].device("laptop", urls[1])  # sender 0's second device, on another gateway
    devices = sending + reading + [extra]
    for device in devices:  # as a client does on connect (live messages wait for it, or a 1 s grace)
        await device.send({"type": "sync", "cursors": {}})
        await device.wait_for("synced")

    async def blast(i: int) -> None:
        for n in range(PER_SENDER):
            await sending[i].send_message(cid, f"s{i}-{n}", body(i, n))

    started = time.monotonic()
    await asyncio.gather(*(blast(i) for i in range(GATEWAYS)))
    sent = time.monotonic()

    def acked(i: int) -> list[dict]:
        no_errors(sending[i])
        return sending[i].of_type("ack", lambda f: f["conversation_id"] == cid)

    def has_all(device: Device) -> bool:
        no_errors(device)
        return len({m["seq"] for m in device.messages(cid)}) >= TOTAL

    for i in range(GATEWAYS):
        await eventually(lambda: len(acked(i)) >= PER_SENDER, 45, f"{PER_SENDER} acks for sender {i}")
    all_acked = time.monotonic()
    for device in devices:
        await eventually(lambda: has_all(device), 45, f"{TOTAL} messages on {device.user_id}/{device.device_id}")
    delivered = time.monotonic()
    await asyncio.sleep(0.5)  # anything extra (duplicates, strays) has time to arrive

    # Acks: 200 per sender, distinct seqs; together exactly 1..600.
    by_seq: dict[int, tuple[int, dict]] = {}
    for i in range(GATEWAYS):
        acks = acked(i)
        assert len(acks) == PER_SENDER, f"sender {i}: {len(acks)} acks"
        assert {a["client_msg_id"] for a in acks} == {f"s{i}-{n}" for n in range(PER_SENDER)}
        seqs = [a["seq"] for a in acks]
        assert len(set(seqs)) == PER_SENDER, f"sender {i}: repeated seqs in its acks"
        for a in acks:
            assert a["seq"] not in by_seq, f"seq {a['seq']} acked to senders {by_seq[a['seq']][0]} and {i}"
            by_seq[a["seq"]] = (i, a)
        assert seqs == sorted(seqs), f"sender {i}: acks not in seq order"
        assert [a["client_msg_id"] for a in acks] == [f"s{i}-{n}" for n in range(PER_SENDER)], (
            f"sender {i}: its messages were not sequenced in the order it sent them")
    assert sorted(by_seq) == list(range(1, TOTAL + 1))

    def check_message(m: dict, where: str) -> None:
        i, ack = by_seq[m["seq"]]
        n = int(ack["client_msg_id"].split("-")[1])
        assert (m["message_id"], m["client_msg_id"], m["sender_id"], m["body"]) == (
            ack["message_id"], ack["client_msg_id"], senders[i].user_id, body(i, n)), f"{where}: seq {m['seq']}"
        assert m["sent_at"] == ack["sent_at"], f"{where}: seq {m['seq']}"

    # Every device: exactly 1..600 in increasing order after dedup by (conversation_id, seq).
    duplicates = {}
    for device in devices:
        where = f"{device.user_id}/{device.device_id}"
        raw = device.messages(cid)
        unique = first_seen(raw)
        duplicates[where] = len(raw) - len(unique)
        seqs = [m["seq"] for m in unique]
        assert seqs == list(range(1, TOTAL + 1)), (
            f"{where}: not 1..{TOTAL} in order; first out of place at index "
            f"{next((k for k, s in enumerate(seqs) if s != k + 1), len(seqs))}: {seqs[:20]}…")
        for m in unique:
            check_message(m, where)
        for i in range(GATEWAYS):  # each sender's messages in the order it sent them
            assert [m["client_msg_id"] for m in unique if m["sender_id"] == senders[i].user_id] == [
                f"s{i}-{n}" for n in range(PER_SENDER)], f"{where}: sender {i}'s messages out of send order"

    # History, paged back with before_seq: the same 600, in order.
    history = await full_history(readers[2], cid, page=200)
    assert [m["seq"] for m in history] == list(range(1, TOTAL + 1))
    for m in history:
        check_message(m, "history")

    elapsed = delivered - started
    print(f"\n[ordering] {TOTAL} messages from {GATEWAYS} senders on {GATEWAYS} gateways, {WORKERS} workers, "
          f"{len(devices)} devices: sent in {sent - started:.2f}s, all acked after {all_acked - started:.2f}s, "
          f"all delivered after {elapsed:.2f}s = {TOTAL / elapsed:.0f} msg/s accepted, "
          f"{TOTAL * len(devices) / elapsed:.0f} deliveries/s; raw duplicates {sum(duplicates.values())}")
    assert sum(duplicates.values()) == 0, f"duplicate message frames (no failure happened): {duplicates}"
    for device in devices:
        await device.close()
