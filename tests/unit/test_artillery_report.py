"""bench.artillery_run's reading of an Artillery report and of the histories (no npm, no server)."""

from bench.artillery_run import check_history, parse_report

SUMMARY = {"min": 20.9, "max": 43.6, "count": 100, "mean": 30.2, "p50": 29.7, "median": 29.7, "p75": 32.8,
           "p90": 36.2, "p95": 37.7, "p99": 43.4, "p999": 43.4}

# The shape of `artillery run --output` (2.0.21), abridged from a real run.
REPORT = {
    "aggregate": {
        "counters": {"vusers.created": 10, "vusers.completed": 9, "vusers.failed": 1,
                     "websocket.messages_sent": 110, "chat.sends": 100, "chat.acks": 98, "chat.rejected": 1,
                     "chat.unacked": 1, "chat.deliveries": 368, "chat.echoes": 98, "chat.replayed": 26,
                     "chat.frames.ack": 98, "chat.frames.hello": 10, "chat.errors.rate_limited": 1,
                     "errors.ECONNREFUSED": 1},
        "rates": {"websocket.send_rate": 18},
        "firstMetricAt": 1796025996808, "lastMetricAt": 1796026003621,
        "summaries": {"chat.send_to_ack": SUMMARY, "chat.sign_in": {**SUMMARY, "count": 10}},
    },
    "intermediate": [{"period": "1796025990000", "counters": {"chat.sends": 50, "chat.acks": 40},
                      "summaries": {"chat.send_to_ack": SUMMARY}},
                     {"period": "1796026000000", "counters": {"vusers.completed": 9}}],
}


def test_parse_report_counters_and_latencies():
    r = parse_report(REPORT)
    assert r["vusers"] == {"created": 10, "completed": 9, "failed": 1}
    assert (r["ws_frames_sent"], r["sends"], r["acks"], r["rejected"], r["unacked"]) == (110, 100, 98, 1, 1)
    assert (r["deliveries"], r["echoes"], r["replayed"], r["closed_early"]) == (368, 98, 26, 0)
    assert r["errors"] == {"chat.errors.rate_limited": 1, "errors.ECONNREFUSED": 1}
    assert r["frames"] == {"ack": 98, "hello": 10}
    assert r["latency_ms"]["chat.send_to_ack"] == {"count": 100, "min": 20.9, "mean": 30.2, "p50": 29.7,
                                                   "p95": 37.7, "p99": 43.4, "max": 43.6}
    assert r["latency_ms"]["chat.send_to_deliver"] is None
    assert r["send_rate"] == 18
    assert r["wall_s"] == 6.813
    assert r["periods"][0]["start_ms"] == 1796025990000
    assert [(p["end"], p["sends"], p["acks"]) for p in r["periods"]] == [("08:06:40", 50, 40), ("08:06:50", 0, 0)]
    assert r["periods"][0]["ack_ms"]["p99"] == 43.4 and r["periods"][1]["ack_ms"] is None


def test_parse_report_of_a_run_that_sent_nothing():
    r = parse_report({"aggregate": {"counters": {"vusers.created": 1, "vusers.failed": 1}}})
    assert r["sends"] == r["acks"] == 0 and r["wall_s"] is None
    assert all(v is None for v in r["latency_ms"].values())


def msg(cid, seq, sender, cmid, sent_at):
    return {"conversation_id": cid, "seq": seq, "sender_id": sender, "client_msg_id": cmid, "sent_at": sent_at}


def test_check_history_counts_gaps_duplicates_and_rate():
    h = {"c1": [msg("c1", 1, "art1-u0", "a", 1000), msg("c1", 2, "art1-u1", "b", 2000)],
         "c2": [msg("c2", 1, "art1-u2", "c", 1500), msg("c2", 3, "art1-u2", "c", 3000)],
         "c3": [msg("c3", 1, "someone", "x", 1200)]}
    found = check_history(h, "art1")
    assert found["messages"] == 5 and found["conversations"] == 3
    assert found["seq_problems"] == ["c2"]
    assert found["duplicate_client_msg_ids"] == 1
    assert found["foreign"] == 1
    assert found["accepted_span_s"] == 2.0 and found["accepted_per_s"] == 2.0
    assert found["sent_at"] == [1000, 1200, 1500, 2000, 3000]


def test_section_renders_the_figures_and_the_check():
    from bench.artillery_run import section

    history = check_history({"c1": [msg("c1", i, "art1-u0", f"m{i}", 1796025991000 + i) for i in (1, 2)]}, "art1")
    a = parse_report(REPORT)
    a.update(sends=2, acks=2, unacked=0)
    r = {"artillery": a, "history": history, "groups": 1, "version": "2.0.21", "node": "v20", "code": "HEAD x",
         "date": "d", "command": "cmd", "loadavg": {"before": 0.1, "after": 0.2},
         "config": {"vus": 2, "ramp_s": 1, "group_size": 2, "messages": 1, "think_ms": 100, "body_bytes": 64,
                    "ack_timeout_s": 15, "partitions": 4},
         "cpu": {"gateway": {"cpu_s": 1.0, "pct_core": 10.0, "peak_pct_core": 35, "rss_mib": 70.0},
                 "everything else": {"cpu_s": 2.0, "pct_core": 20.0, "peak_pct_core": None, "rss_mib": None}},
         "artillery_wall_s": 10.0, "died": ["t1-worker1"]}
    text = "\n".join(section(r))
    assert "## Artillery (independent load tool), d" in text
    assert "| 10 / 9 / 1 |" in text and "| 2 / 1 / 0 |" in text and "29.7 / 37.7 / 43.4 / 43.6" in text
    assert "equal to the sends and acks" in text and "NOT equal" not in text
    assert "| 08:06:40 | 50 | 2 | 40 |" in text
    assert "| gateway | 1.00 | 10 | 35 | 70 |" in text and "| everything else | 2.00 | 20 | – | – |" in text
    assert "- process t1-worker1 exited during the run" in text
