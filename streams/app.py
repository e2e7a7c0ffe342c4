"""The one Faust App of the stream workers."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import Any

import faust

from chat.logs import logging_config
from chat.secure import faust_credentials
from chat.settings import Settings
from streams import transport

settings = Settings.from_env()


def _broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{host.strip()}" for host in bootstrap.split(",") if host.strip())


def _datadir(data_dir: str) -> Path:
    # No Faust tables are used (see streams/recovery.py), so workers can share it.
    path = Path(data_dir) / "faust"
    path.mkdir(parents=True, exist_ok=True)
    return path


log = logging.getLogger(__name__)

EXIT_AGENT_CRASHED = 70  # EX_SOFTWARE: the worker stopped because an agent crashed
crashes: list[BaseException] = []


class ChatApp(faust.App):
    def _new_transport(self) -> Any:
        """Faust's aiokafka transport with the consumer of streams/transport.py."""
        return transport.Transport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        """Faust calls this for every agent whose loop raised (its one hook for them)."""
        await super()._on_agent_error(agent, exc)
        await crash_worker(agent, exc)


async def crash_worker(agent: Any, exc: BaseException) -> None:
    """An exception out of an agent's loop stops the whole worker.

    (Transient errors are retried where they happen, in ``streams.retry``.) Left to Faust, the
    agent would be marked crashed and the worker would go on without it, looking alive: the
    presence agent was seen dead for good that way. A stopped worker is restarted by its
    supervisor (``make run``, systemd, Kubernetes) and its partitions move meanwhile; the crashed
    batch's offsets were never committed, so it is read again, and every projection is
    idempotent. ``streams.worker`` exits with ``EXIT_AGENT_CRASHED``."""
    log.critical("agent %s crashed (%s: %s): stopping the worker for its supervisor to restart it",
                 getattr(agent, "name", agent), type(exc).__name__, exc, exc_info=exc)
    crashes.append(exc)
    os.kill(os.getpid(), signal.SIGTERM)


app = ChatApp(
    settings.app_id,
    broker=_broker_url(settings.kafka_bootstrap),
    broker_credentials=faust_credentials(settings),  # SASL/TLS of a secured broker; None: PLAINTEXT
    # A worker that dies loses its partitions after the session timeout (10 s, not Faust's 60).
    broker_session_timeout=settings.kafka_session_timeout_s,
    broker_heartbeat_interval=settings.kafka_session_timeout_s / 3,
    broker_commit_interval=1.0,
    consumer_auto_offset_reset="earliest",
    # At-least-once, with idempotent projections and seq-deduplicating clients: a batch read
    # again after a crash changes nothing. Exactly-once would need Faust's aiokafka transactions
    # around writes that mostly go to Redis and the timeline store, outside any transaction.
    processing_guarantee="at_least_once",
    producer_acks=-1,
    producer_linger=0.002,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    topic_allow_declare=False,
    # No leader election: nothing here runs on one worker only, and its topic (never created,
    # topics are declared by infra.topics) made every start log an error and subscribe to it.
    topic_disable_leader=True,
    web_enabled=False,
    datadir=_datadir(settings.data_dir),
    stream_wait_empty=False,
    logging_config=logging_config(settings, process="worker", worker_id=settings.worker_id),
)
