"""Merging the raw samples of ``bench.procs``' worker processes into one ``LoadGen.results()``
dict: pure functions, no I/O (tests/unit/test_bench_merge.py).

Times: a worker reports each message it sent with its ``time.time()`` at the send and the
ack and own-device echo as ``perf_counter`` differences from the send; each delivery as a
wall-clock arrival (for a message sent in the same process: send time plus the
``perf_counter`` difference; otherwise the receiver's ``time.time()``). So the merged messages
live on the senders' wall-clock timeline, and ``results()`` reads them as it reads
``perf_counter`` times in a one-process run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from bench.loadgen import LoadGen, Msg, Stats, percentiles


def merge_stats(parts: list[dict[str, Any]]) -> Stats:
    """Sum the workers' ``vars(Stats)``: counters and counts add up, sample lists concatenate."""
    out = Stats()
    for part in parts:
        for name, value in part.items():
            cur = getattr(out, name)
            if isinstance(cur, Counter):
                cur.update(value)
            elif isinstance(cur, list):
                cur.extend(value)
            else:
                setattr(out, name, cur + value)
    return out


def merge_messages(msgs: list[Msg], reports: list[dict[str, Any]]) -> None:
    """Fill the parent's plan (full ``expected`` sets) from the workers' rows, in wall-clock time.

    ``sent`` rows: (k, scheduled, sent, ack after s, seq, message_id, sent_at, error, echo after s),
    from the sending process; ``got`` rows: (k, device idx, arrival), from the receiving one.
    """
    for rep in reports:
        for k, sched, wall, ack_s, seq, message_id, sent_at, error, echo_s in rep["sent"]:
            m = msgs[k]
            m.t_sched, m.t_send, m.wall_send = sched, wall, wall
            m.t_ack = None if ack_s is None or wall is None else wall + ack_s
            m.echo = None if echo_s is None or wall is None else wall + echo_s
            m.seq, m.message_id, m.sent_at, m.error = seq, message_id, sent_at, error
    for rep in reports:
        for k, dev, arrival in rep["got"]:
            msgs[k].got[dev] = arrival


class _Lag:
    def __init__(self, samples: list[float]) -> None:
        self.samples = samples


def merge_step(gen: LoadGen, msgs: list[Msg], rate: float, reports: list[dict[str, Any]],
               t0: float) -> dict[str, Any]:
    """One measured step of every worker (``msgs``: the parent's plan of it, ``gen.plan``) as
    one results dict (``LoadGen.results``)."""
    merge_messages(msgs, reports)
    gen.stats = merge_stats([r["stats"] for r in reports])
    for r in reports:
        for idx, code in r["disconnects"]:
            gen.devices[idx].close_code, gen.devices[idx].closed_at = code, 0.0
    t_sent = max(r["t_sent"] for r in reports)
    gen.timings["drain_s"] = max(r["drained"] for r in reports) - t_sent
    cfg = gen.cfg
    gen.cfg = replace(cfg, rate=rate, messages=len(msgs))
    try:
        result = gen.results(msgs, t0, t_sent, _Lag([x for r in reports for x in r["lag_ms"]]))
    finally:
        gen.cfg = cfg
    result["loadgen_cpu_s"] = round(sum(r["cpu_s"] for r in reports), 2)
    result["loadgen_cpu_total_s"] = round(sum(r["cpu_total_s"] for r in reports), 2)
    result["procs"] = len(reports)
    return result


def merge_warmup(gen: LoadGen, count: int, replies: list[list[tuple[Any, ...]]]) -> dict[str, Any]:
    msgs = gen.plan("warmup", count)
    for rows in replies:
        for k, seq, ack_s in rows:
            msgs[k].seq = seq
            msgs[k].t_send = 0.0
            msgs[k].t_ack = ack_s
    gen.warmup_msgs = msgs  # type: ignore[attr-defined]  (its seqs join the measured ones' check)
    acked = [m.t_ack * 1000 for m in msgs if m.t_ack is not None]
    return {"messages": len(msgs), "acked": len(acked), "ack_ms": percentiles(acked)}
