"""The CQL of the Cassandra timeline backend (``timelines_cassandra.py``): its statements, the
schema of ``infra/cassandra/schema.cql`` for a given keyspace, and the checks of the names put
into them."""

from __future__ import annotations

import re
from importlib import resources

_KEYSPACE_NAME = re.compile(r"[a-z][a-z0-9_]{0,47}")
_COLUMNS = ("conversation_id, seq, message_id, sender_id, client_msg_id, body, media, sent_at,"
            " reply_to, reply_sender, mentions, edited_at, deleted, reactions, change_seq")


def statements_cql(keyspace: str) -> dict[str, str]:
    """The CQL of every prepared statement, by name, for ``keyspace``."""
    table = f"{checked_keyspace(keyspace)}.messages"
    changes = f"{checked_keyspace(keyspace)}.changes"
    # The page queries filter on sent_at, a regular column: ALLOW FILTERING is
    # cheap here because the partition and a seq slice are fixed; it only skips
    # rows past retention that their TTL has not removed yet, and LIMIT applies
    # after the filter, so pages and has_more never count expired rows.
    page = (
        f"SELECT {_COLUMNS} FROM {table}"
        " WHERE conversation_id = ? AND seq > ? AND seq < ? AND sent_at > ?"
        " ORDER BY seq {order} LIMIT ? ALLOW FILTERING"
    )
    return {
        "insert": f"INSERT INTO {table} ({_COLUMNS}) VALUES ({', '.join('?' * 15)}) USING TTL ?",
        "messages": f"SELECT {_COLUMNS} FROM {table} WHERE conversation_id = ? AND seq IN ?",
        "update_state": (f"UPDATE {table} USING TTL ? SET body = ?, media = ?, mentions = ?, edited_at = ?,"
                         " deleted = ?, reactions = ?, change_seq = ? WHERE conversation_id = ? AND seq = ?"),
        "insert_change": (f"INSERT INTO {changes} (conversation_id, change_seq, seq, change, by_user, changed_at,"
                          " sent_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"),
        "changes": (f"SELECT change_seq, seq, change, by_user, changed_at, sent_at FROM {changes}"
                    " WHERE conversation_id = ? AND change_seq > ? LIMIT ?"),
        "last_change_seq": f"SELECT change_seq FROM {changes} WHERE conversation_id = ? ORDER BY change_seq DESC LIMIT 1",
        "stored_seqs": f"SELECT seq FROM {table} WHERE conversation_id = ? AND seq >= ? AND seq <= ?",
        "delete": f"DELETE FROM {table} WHERE conversation_id = ? AND seq = ?",
        "page_oldest_first": page.format(order="ASC"),
        "page_newest_first": page.format(order="DESC"),
        "last_seq": f"SELECT seq FROM {table} WHERE conversation_id = ? ORDER BY seq DESC LIMIT 1",
        "ping": "SELECT release_version FROM system.local",
    }


def schema_statements(keyspace: str, replication_factor: int = 1, cql: str | None = None) -> list[str]:
    """The statements of ``schema.cql``, with its keyspace ``chat`` renamed and its RF set."""
    if cql is None:
        cql = (resources.files("infra") / "cassandra" / "schema.cql").read_text(encoding="utf-8")
    keyspace = checked_keyspace(keyspace)
    without_comments = re.sub(r"--[^\n]*", "", cql)
    statements = []
    for statement in without_comments.split(";"):
        statement = " ".join(statement.split())
        if not statement:
            continue
        statement = re.sub(r"(KEYSPACE IF NOT EXISTS )chat\b", rf"\g<1>{keyspace}", statement, flags=re.IGNORECASE)
        statement = re.sub(r"\bchat\.", f"{keyspace}.", statement)
        statement = re.sub(r"('replication_factor'\s*:\s*)\d+", rf"\g<1>{int(replication_factor)}", statement)
        statements.append(statement)
    return statements


def checked_keyspace(keyspace: str) -> str:
    """A keyspace name safe to put into CQL unquoted."""
    if not _KEYSPACE_NAME.fullmatch(keyspace):
        raise ValueError(f"keyspace must match {_KEYSPACE_NAME.pattern}, not {keyspace!r}")
    return keyspace


def contact_point(host: str) -> str | tuple[str, int]:
    """``"host"`` or ``"host:port"`` (IPv6 addresses without a port are left alone)."""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host
