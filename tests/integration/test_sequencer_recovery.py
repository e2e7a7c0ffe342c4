"""The next ``seq`` after a worker restart: a kill -9 mid-stream, and a clean restart.

A worker keeps its sequencer state in memory and rebuilds it from the events partition,
up to its own ``PartitionFenced`` record, when it takes the partition over
(``streams/recovery.py``). Commands the dead worker had read but whose offsets were not
committed are read again by the next worker, and clients retry: both must come out as
``MessageDeduplicated`` with the original seq, and seqs must stay 1..N without a gap.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter

import pytest

from chat.codec import Decoded
from chat.events import (
    MessageRejected, ConversationCreateRequested, ConversationCreated, MessageAccepted, MessageDeduplicated,
    MessageSendRequested, Origin, PartitionFenced,
)
from chat.ids import new_group_id
from tests.support import CommandProducer, PartitionReader, System

ORIGIN = Origin(gateway_id="gw-test", device_id="dev1")
TOTAL = 600
KILL_AFTER = TOTAL // 3
RESENDS = 50
RATE_PER_S = 50.0
JOIN_TIMEOUT = 40.0  # a worker joins its group before its first event


@pytest.fixture
def system(stack, tmp_path_factory):
    system = System(stack, tmp_path_factory.mktemp("recovery"), partitions=2)
    yield system
    system.stop()


def send(cid: str, sender: str, client_msg_id: str) -> MessageSendRequested:
    return MessageSendRequested(conversation_id=cid, sender_id=sender, client_msg_id=client_msg_id,
                                body=f"body of {client_msg_id}", origin=ORIGIN)


def created_conversation(system: System, producer: CommandProducer, alice: str) -> tuple[str, PartitionReader]:
    """A new group of ``alice`` and a reader of its events partition, once the worker created it."""
    cid = new_group_id()
    producer.send(ConversationCreateRequested(conversation_id=cid, kind="group", creator_id=alice,
                                              member_ids=[], origin=ORIGIN, name="recovery"))
    reader = PartitionReader(system.settings.kafka_bootstrap, system.settings.events_topic,
                             producer.partition_of(cid))
    reader.read_until(lambda rs: any(isinstance(r.event, ConversationCreated) and r.event.conversation_id == cid
                                     for r in rs), JOIN_TIMEOUT, "the conversation created")
    return cid, reader


def of_type(records: list[Decoded], cid: str, kind: type) -> list:
    return [r.event for r in records if isinstance(r.event, kind) and r.event.conversation_id == cid]


def fences(records: list[Decoded], partition: int) -> list[tuple[int, str]]:
    """(index in the log, worker id) of each fence of the partition."""
    return [(i, r.event.worker_id) for i, r in enumerate(records)
            if isinstance(r.event, PartitionFenced) and r.event.partition == partition]


def paced(producer: CommandProducer, commands: list[MessageSendRequested], produced: list[int]) -> None:
    """Produce ``commands`` at a steady rate; ``produced[0]`` counts them as they go."""
    started = time.monotonic()
    for i, command in enumerate(commands):
        time.sleep(max(0.0, started + i / RATE_PER_S - time.monotonic()))
        producer.send(command)
        produced[0] = i + 1
    producer.flush()


def test_kill_9_mid_stream_keeps_seq_gap_free_and_dedups_retries(system):
    first = system.start_worker()
    producer = CommandProducer(system.settings)
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    cid, reader = created_conversation(system, producer, alice)
    partition = producer.partition_of(cid)
    ids = [f"c{i:03d}" for i in range(TOTAL)]
    retried = ids[KILL_AFTER - RESENDS * 2:KILL_AFTER:2]  # around the kill; sent again later in the stream
    schedule = [send(cid, alice, i) for i in ids[:KILL_AFTER]]
    rest = [send(cid, alice, i) for i in ids[KILL_AFTER:]]
    step = len(rest) // RESENDS
    for n, command in enumerate(rest):
        schedule.append(command)
        if n % step == step - 1 and n // step < RESENDS:
            schedule.append(send(cid, alice, retried[n // step]))
    produced = [0]
    thread = threading.Thread(target=paced, args=(producer, schedule, produced), daemon=True)
    thread.start()
    try:
        while produced[0] < KILL_AFTER and thread.is_alive():
            time.sleep(0.01)
        records = reader.read_until(lambda rs: len(of_type(rs, cid, MessageAccepted)) >= 1, 20, "a first message")
        os.kill(first.pid, signal.SIGKILL)
        first.proc.wait(10)
        accepted_before_kill = len(of_type(reader.poll(), cid, MessageAccepted))
        assert accepted_before_kill < TOTAL, "the kill must come mid-stream"
        second = system.start_worker()
    finally:
        thread.join(60)
    assert produced[0] == len(schedule) == TOTAL + RESENDS and not thread.is_alive()
    assert producer.delivered == 1 + TOTAL + RESENDS and not producer.errors

    def settled(rs: list[Decoded]) -> bool:
        accepted = of_type(rs, cid, MessageAccepted)
        if len(accepted) > TOTAL:  # more than there are ids: the assertions below say what went wrong
            return True
        return ({e.client_msg_id for e in accepted} == set(ids)
                and set(retried) <= {e.client_msg_id for e in of_type(rs, cid, MessageDeduplicated)})

    records = reader.read_until(settled, JOIN_TIMEOUT + 10, f"{TOTAL} accepted and {RESENDS} deduplicated")
    reader.close()
    accepted = of_type(records, cid, MessageAccepted)
    assert [e.seq for e in accepted] == list(range(1, TOTAL + 1))  # in log order, gap-free, no seq twice
    assert Counter(e.client_msg_id for e in accepted) == Counter(ids)  # each id accepted exactly once
    original = {e.client_msg_id: e for e in accepted}
    duplicates = of_type(records, cid, MessageDeduplicated)
    assert set(retried) <= {d.client_msg_id for d in duplicates}
    assert [(d.seq, d.message_id, d.sent_at) for d in duplicates] == [
        (original[d.client_msg_id].seq, original[d.client_msg_id].message_id, original[d.client_msg_id].sent_at)
        for d in duplicates]

    fenced = fences(records, partition)
    assert {"w0", "w1"} <= {worker for _, worker in fenced}, fenced
    first_fence_of_w1 = min(i for i, worker in fenced if worker == "w1")
    before = [r.event.seq for r in records[:first_fence_of_w1] if isinstance(r.event, MessageAccepted)
              and r.event.conversation_id == cid]
    after = [r.event.seq for r in records[first_fence_of_w1:] if isinstance(r.event, MessageAccepted)
             and r.event.conversation_id == cid]
    assert before and after, "both workers sequenced messages"
    assert after[0] == before[-1] + 1  # the new worker went on from the last seq in the log
    assert second.running, second.log_tail()


def test_clean_restart_continues_at_the_next_seq(system):
    worker = system.start_worker()
    producer = CommandProducer(system.settings)
    alice = f"alice-{uuid.uuid4().hex[:6]}"
    cid, reader = created_conversation(system, producer, alice)
    partition = producer.partition_of(cid)
    for i in range(20):
        producer.send(send(cid, alice, f"before-{i}"))
    producer.flush()
    records = reader.read_until(lambda rs: len(of_type(rs, cid, MessageAccepted)) >= 20, 20, "20 accepted")
    last = of_type(records, cid, MessageAccepted)[-1]
    assert last.seq == 20

    assert worker.stop() == 0, worker.log_tail()  # SIGTERM: Faust commits its offsets, leaves the group
    system.start_worker()
    producer.send(send(cid, alice, "before-7"))  # a retry from before the restart
    producer.send(send(cid, alice, "after"))
    producer.flush()
    records = reader.read_until(lambda rs: any(e.client_msg_id == "after" for e in of_type(rs, cid, MessageAccepted))
                                or bool(of_type(rs, cid, MessageRejected)), JOIN_TIMEOUT, "the message sent after")
    reader.close()
    assert of_type(records, cid, MessageRejected) == []  # the new worker knows the conversation
    accepted = of_type(records, cid, MessageAccepted)
    assert [e.seq for e in accepted] == list(range(1, 22))
    assert (accepted[-1].client_msg_id, accepted[-1].seq) == ("after", last.seq + 1)
    by_id = {e.client_msg_id: e for e in accepted}
    duplicates = of_type(records, cid, MessageDeduplicated)  # the retry, and any command read twice
    assert "before-7" in {d.client_msg_id for d in duplicates}
    assert all((d.seq, d.message_id) == (by_id[d.client_msg_id].seq, by_id[d.client_msg_id].message_id)
               for d in duplicates)
    assert by_id["before-7"].seq == 8
    assert [w for _, w in fences(records, partition)][-1] == "w1"  # the new worker fenced and recovered
