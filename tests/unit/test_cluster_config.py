"""``make cluster``'s configuration, without starting anything: the three Kafka nodes' quorum
and durability settings, the proxy in front of the gateways, the settings it runs with."""

from __future__ import annotations

from chat.redis_pool import failover_retries
from chat.settings import Settings
from infra.cluster import Cluster
from infra.cluster_stack import ClusterPorts, ClusterStack, cluster_id


def test_three_kafka_nodes_form_one_durable_quorum(tmp_path):
    ports = ClusterPorts.fixed()
    stack = ClusterStack(tmp_path, ports, Settings(replication_factor=3, min_insync_replicas=2))
    props = [k.server_properties() for k in stack.kafkas]
    voters = "1@127.0.0.1:19195,2@127.0.0.1:19196,3@127.0.0.1:19197"
    assert [p["controller.quorum.voters"] for p in props] == [voters] * 3
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    for p in props:
        assert (p["default.replication.factor"], p["min.insync.replicas"]) == ("3", "2")
        assert p["unclean.leader.election.enable"] == "false"
        assert p["offsets.topic.replication.factor"] == "3"
    assert len({k.cluster_id for k in stack.kafkas}) == 1
    assert stack.bootstrap == "127.0.0.1:19192,127.0.0.1:19193,127.0.0.1:19194"


def test_the_kafka_cluster_id_is_made_once_and_kept(tmp_path):
    first = cluster_id(tmp_path)
    assert cluster_id(tmp_path) == first and len(first) == 22


def test_the_cluster_runs_on_replicated_topics_a_redis_cluster_and_cassandra(tmp_path):
    cluster = Cluster(tmp_path, ClusterPorts.fixed(), environ={})
    s = cluster.settings
    assert (s.replication_factor, s.min_insync_replicas, s.cassandra_replicas) == (3, 2, 1)
    assert s.redis_cluster and s.timeline_backend == "cassandra"
    assert [w.env["CHAT_WORKER_ID"] for w in cluster.workers] == ["w1", "w2"]
    assert [g.env["CHAT_GATEWAY_ID"] for g in cluster.gateways] == ["gw1", "gw2"]
    assert cluster.url == "http://127.0.0.1:8080"
    config = (tmp_path / "proxy" / "haproxy.cfg").read_text()
    assert "bind 127.0.0.1:8080" in config and "timeout tunnel" in config  # WebSockets live long
    assert "server gw1 127.0.0.1:8081 check" in config and "server gw2 127.0.0.1:8082 check" in config


def test_cassandra_replicas_follow_the_replication_factor_unless_set():
    assert Settings(replication_factor=3).cassandra_replicas == 3
    assert Settings(replication_factor=3, cassandra_replication_factor=1).cassandra_replicas == 1
    assert Settings.from_env({"CHAT_REDIS_CLUSTER": "true"}).redis_cluster


def test_a_cluster_pipeline_retries_for_about_the_wait():
    assert failover_retries(0.05) == 1
    assert failover_retries(5.0) == 20  # 0.25 s before each retry
