"""``python -m infra.deploy.keyspace``: create the timeline keyspace with NetworkTopologyStrategy.

Run once before the first worker or gateway starts (the compose file's ``init`` service): the
store's own ``CREATE KEYSPACE IF NOT EXISTS`` (SimpleStrategy, for one local node) then leaves
it as it is. ``CHAT_REPLICATION_FACTOR`` replicas in data centre ``dc1`` (the compose file's
``CASSANDRA_DC``); reads and writes are at LOCAL_QUORUM (projections/timelines_cassandra.py).
"""

from __future__ import annotations

import re
import sys

from chat.settings import Settings


def main() -> int:
    from cassandra.cluster import Cluster

    from chat.secure import cassandra_options
    from projections.timelines_cassandra import PROTOCOL_VERSION
    from projections.timelines_cassandra_cql import contact_point

    settings = Settings.from_env()
    if not re.fullmatch(r"[A-Za-z0-9_]+", settings.cassandra_keyspace):
        print(f"bad keyspace name {settings.cassandra_keyspace!r}", file=sys.stderr)
        return 2
    cluster = Cluster([contact_point(h) for h in settings.cassandra_host_list], protocol_version=PROTOCOL_VERSION,
                      **cassandra_options(settings))
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {settings.cassandra_keyspace} WITH replication ="
            f" {{'class': 'NetworkTopologyStrategy', 'dc1': {settings.cassandra_replicas}}}")
    finally:
        cluster.shutdown()
    print(f"keyspace {settings.cassandra_keyspace}: NetworkTopologyStrategy, dc1={settings.cassandra_replicas}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
