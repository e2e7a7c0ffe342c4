"""The reference compose file (infra/deploy/compose.yaml), checked without Docker.

Kafka refuses to format storage with a cluster id that is not 16 bytes in URL-safe base64
(22 characters, as ``kafka-storage random-uuid`` prints): the file once had
``chat-kraft-cluster-0001`` and no broker could start.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = (ROOT / "infra" / "deploy" / "compose.yaml").read_text()


def valid_cluster_id(text: str) -> bool:
    """Kafka's rule (``Uuid.fromString``): 22 URL-safe base64 characters that decode to 16
    bytes, not the all-zero or reserved ids, not starting with '-'."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", text) or text.startswith("-"):
        return False
    raw = base64.urlsafe_b64decode(text + "==")
    return len(raw) == 16 and raw not in {bytes(16), bytes(15) + b"\x01"}


def test_kafka_cluster_id_is_a_kraft_uuid() -> None:
    ids = re.findall(r"^\s*CLUSTER_ID:\s*\"?([^\"\s#]+)", COMPOSE, flags=re.M)
    assert ids, "no CLUSTER_ID in compose.yaml"
    assert all(valid_cluster_id(i) for i in ids), ids


def test_cluster_id_rule() -> None:
    from infra.kafka import new_cluster_id

    assert valid_cluster_id(new_cluster_id())
    assert not valid_cluster_id("chat-kraft-cluster-0001")
    assert not valid_cluster_id("AAAAAAAAAAAAAAAAAAAAAA")  # Uuid.ZERO_UUID


def test_images_and_shared_media() -> None:
    cassandra = re.findall(r"image:\s*cassandra:(\d+)", COMPOSE)
    assert cassandra and all(int(major) >= 5 for major in cassandra), cassandra  # 4.x is not what is tested
    # Every gateway and worker sees the same media: on S3, not each container's own disk.
    assert re.search(r"^\s*CHAT_MEDIA_BACKEND:\s*s3\s*$", COMPOSE, flags=re.M)
    endpoint = re.search(r"^\s*CHAT_MEDIA_S3_ENDPOINT:\s*http://(\w+):", COMPOSE, flags=re.M)
    service = endpoint and re.search(rf"^  {endpoint.group(1)}:\s*$", COMPOSE, flags=re.M)
    assert service, "the S3 service CHAT_MEDIA_S3_ENDPOINT names is not in compose"
