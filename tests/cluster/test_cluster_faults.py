"""Faults against ``make cluster``'s deployment, under steady load from clients that behave as
PROTOCOL.md says (tests/faults/traffic.py), all through the one proxy URL: afterwards every
acked message is stored exactly once, gap-free and in order, and every device holds all of it.

The faults run in this order on one cluster, and each leaves it whole again for the next: a
Kafka broker leading the partitions in use is killed and restarted; one of two workers is
killed and a third started; a gateway behind the proxy is killed (and started again after);
Cassandra is stopped for 10 s; a Redis Cluster master is killed (its replica takes over; the
old master comes back as a replica). Counts per fault are printed and appended to the file
named by ``CHAT_FAULT_REPORT`` when it is set.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Callable

from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka.admin import AdminClient

from chat import keys
from infra.cluster import Cluster
from tests.faults.test_faults import report
from tests.faults.traffic import Counts, Traffic

LOAD_S = 3.0  # steady load before and after each fault


async def under_load(cluster: Cluster, session, fault: str, act: Callable[[Traffic], object]) -> Counts:
    """Traffic through the proxy; ``act`` (in a thread) mid-load; then the books are checked."""
    traffic = await Traffic.start(session, [cluster.url])
    try:
        await asyncio.sleep(LOAD_S)
        await asyncio.to_thread(act, traffic)
        await asyncio.sleep(LOAD_S)
        counts = await traffic.finish(drain_s=120.0)
    finally:
        await traffic.close()
    report(f"cluster: {fault}", counts)
    assert (counts.lost, counts.duplicates, counts.gaps, counts.reordered, counts.ack_conflicts) == (0, 0, 0, 0, 0), \
        counts.line(fault)
    assert counts.acked == counts.sent == counts.messages, counts.line(fault)
    assert counts.converged == counts.devices, counts.line(fault)
    return counts


def partitions_in_use(cluster: Cluster, traffic: Traffic) -> set[int]:
    """The partitions of the traffic's conversations (murmur2 of the key, as the gateways do)."""
    n = cluster.settings.partitions
    every = list(range(n))
    return {DefaultPartitioner()(cid.encode(), every, every) for cid in traffic.groups}


def leaders(cluster: Cluster, topic: str) -> dict[int, int]:
    """partition -> the node id leading it now."""
    admin = AdminClient({"bootstrap.servers": cluster.stack.bootstrap, "log_level": 0})
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return {p: m.leader for p, m in meta.partitions.items()}


def busiest_leader(cluster: Cluster, traffic: Traffic) -> int:
    """The node leading the most commands and events partitions the traffic uses."""
    used = partitions_in_use(cluster, traffic)
    votes: dict[int, int] = {}
    for topic in (cluster.settings.commands_topic, cluster.settings.events_topic):
        for partition, node in leaders(cluster, topic).items():
            if partition in used and node >= 0:
                votes[node] = votes.get(node, 0) + 1
    return max(votes, key=lambda node: votes[node])


def wait_served_by(cluster: Cluster, workers: set[str], timeout: float = 60.0) -> dict[str, set[int]]:
    """Block until each of ``workers`` announces (``workers:{app id}``, unexpired) some commands
    partitions and together they announce all of them; returns worker id -> its partitions. A
    killed worker's last announcement lingers until it expires: only ``workers`` are read."""
    from redis.cluster import RedisCluster

    client = RedisCluster.from_url(cluster.stack.redis_url)
    wanted, deadline = set(range(cluster.settings.partitions)), time.monotonic() + timeout
    try:
        while True:
            now_ms, served = int(time.time() * 1000), {}
            for worker, value in client.hgetall(keys.workers(cluster.settings.app_id)).items():
                parts, _, expires = value.decode().rpartition("|")
                commands = {int(p) for p in parts.partition(";")[0].split(",") if p}
                if int(expires) > now_ms and commands and worker.decode() in workers:
                    served[worker.decode()] = commands
            if set(served) == workers and set().union(*served.values()) == wanted:
                return served
            assert time.monotonic() < deadline, f"not served by {sorted(workers)} after {timeout}s: {served}"
            time.sleep(0.2)
    finally:
        client.close()


def kill_9(service) -> None:
    os.kill(service.pid, signal.SIGKILL)
    service.proc.wait()


async def test_kill_9_the_kafka_broker_leading_the_partitions_in_use_then_restart_it(cluster, session):
    def act(traffic: Traffic) -> None:
        node = cluster.stack.kafka_by_id(busiest_leader(cluster, traffic))
        kill_9(node)
        time.sleep(5.0)  # leaders move to the two left (min.insync.replicas=2 still holds)
        node.start().wait_ready(60)

    await under_load(cluster, session, "kill -9 the Kafka broker leading the partitions in use, restart it", act)


async def test_kill_9_one_of_two_workers_then_start_a_third(cluster, session):
    def act(traffic: Traffic) -> None:
        first, second = (w.env["CHAT_WORKER_ID"] for w in cluster.workers[:2])
        wait_served_by(cluster, {first, second})
        kill_9(cluster.workers[0])
        wait_served_by(cluster, {second})  # its partitions moved to the other (session timeout 10 s)
        third = cluster.add_worker().start()
        wait_served_by(cluster, {second, third.env["CHAT_WORKER_ID"]})  # and moved again

    await under_load(cluster, session, "kill -9 one of two workers, then start a third", act)
    cluster.workers = [w for w in cluster.workers if w.running]


async def test_kill_9_a_gateway_behind_the_proxy(cluster, session):
    killed = cluster.gateways[0]

    def act(traffic: Traffic) -> None:
        kill_9(killed)

    try:
        counts = await under_load(cluster, session, "kill -9 a gateway behind the proxy", act)
        assert counts.reconnects > 0  # its clients came back through the proxy and synced
    finally:
        killed.start()
        killed.wait_ready(60)


async def test_stop_cassandra_for_10_s(cluster, session):
    def act(traffic: Traffic) -> None:
        node = cluster.stack.cassandra
        os.kill(node.pid, signal.SIGSTOP)
        try:
            time.sleep(10)
        finally:
            os.kill(node.pid, signal.SIGCONT)

    await under_load(cluster, session, "stop Cassandra for 10 s (SIGSTOP)", act)


async def test_kill_a_redis_cluster_master(cluster, session):
    redis = cluster.stack.redis
    killed = []

    def act(traffic: Traffic) -> None:
        node = redis.master_of(keys.conversation(next(iter(traffic.groups))))
        kill_9(node)
        killed.append(node)
        deadline = time.monotonic() + 30
        while len(redis.masters()) < 3:  # its replica is promoted (cluster-node-timeout 2 s)
            assert time.monotonic() < deadline, "no replica took over"
            time.sleep(0.2)

    try:
        await under_load(cluster, session, "kill -9 a Redis Cluster master", act)
    finally:
        for node in killed:
            node.start().wait_ready(30)  # back as a replica of the promoted one
