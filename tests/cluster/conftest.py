"""The cluster tier (``make test-cluster``): faults against ``make cluster``'s deployment, one
cluster for the whole directory (about 30 s to start). Collected by ``make test`` too, but
skipped there: these tests run only when ``tests/cluster`` is named on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def named(config: pytest.Config) -> bool:
    """Whether a command-line argument is this directory or a file in it."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if named(config):
        return
    skip = pytest.mark.skip(reason="the cluster tier: make test-cluster (bash infra/test.sh tests/cluster)")
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``make cluster``'s deployment on free ports: 3 Kafka brokers, a Redis Cluster,
    Cassandra, 2 workers, 2 gateways behind HAProxy."""
    from infra.cluster import Cluster
    from infra.cluster_stack import ClusterPorts

    deployment = Cluster(tmp_path_factory.mktemp("cluster"), ClusterPorts.free())
    deployment.start()
    try:
        yield deployment
    finally:
        deployment.stop()
