"""The local Kafka node's configuration, without starting it."""

from __future__ import annotations

import base64

from infra.kafka import Kafka, new_cluster_id


def test_cluster_ids_are_kafka_uuids():
    ids = {new_cluster_id() for _ in range(500)}
    assert len(ids) == 500
    for i in ids:
        assert len(i) == 22 and not i.startswith("-")
        assert len(base64.urlsafe_b64decode(i + "==")) == 16


def test_one_node_is_its_own_quorum_with_replication_one(tmp_path):
    props = Kafka(9, tmp_path, controller_port=10, log_path=tmp_path / "k.log").server_properties()
    assert props["controller.quorum.voters"] == "1@127.0.0.1:10"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9,CONTROLLER://127.0.0.1:10"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["auto.create.topics.enable"] == "false"


def test_a_quorum_member_keeps_the_default_internal_replication(tmp_path):
    node = Kafka(9, tmp_path, node_id=2, controller_port=10, voters={1: 20, 2: 10, 3: 30},
                 log_path=tmp_path / "k.log", properties={"min.insync.replicas": "2"})
    props = node.server_properties()
    assert props["controller.quorum.voters"] == "1@127.0.0.1:20,2@127.0.0.1:10,3@127.0.0.1:30"
    assert "offsets.topic.replication.factor" not in props
    assert props["min.insync.replicas"] == "2"
