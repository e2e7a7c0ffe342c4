from __future__ import annotations

import os

import aiohttp
import pytest
import pytest_asyncio

from infra.stack import LocalStack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One real Apache Kafka node and one real Redis for the whole run."""
    with LocalStack(tmp_path_factory.mktemp("stack"), topics={}) as services:
        yield services


@pytest_asyncio.fixture(loop_scope="session")
async def session():
    """One HTTP client session per test, for the protocol clients of tests/client.py."""
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real local S3-compatible server (npm ``s3rver``) for
    the S3 media backend: ``s3.endpoint``; access key and secret ``S3RVER``."""
    from infra.services import S3rver, free_port

    base = tmp_path_factory.mktemp("s3")
    with S3rver(free_port(), base / "data", log_path=base / "s3rver.log") as server:
        yield server


@pytest.fixture(scope="session")
def cassandra_hosts(tmp_path_factory):
    """``CHAT_CASSANDRA_HOSTS`` of a Cassandra to test against: the external cluster named by
    ``CASSANDRA_HOSTS`` if set, otherwise one local node (``infra.cassandra``) for the whole run,
    started the first time a test asks for it (5-10 s). Tests use keyspaces of their own."""
    external = os.environ.get("CASSANDRA_HOSTS")
    if external:
        yield external
        return
    from infra.cassandra import Cassandra

    with Cassandra(tmp_path_factory.mktemp("cassandra")) as node:
        yield node.contact_point
