"""Unit tests of the load generator's pure parts: percentiles, how users are split over
processes, and how the processes' raw samples are merged into one summary (bench.merge)."""

from __future__ import annotations

from collections import Counter

from bench.loadgen import Config, LoadGen, Stats, owner_of, percentiles
from bench.merge import merge_stats, merge_step


def test_percentiles_are_nearest_rank_with_p95():
    p = percentiles([float(x) for x in range(100, 0, -1)])
    assert (p["n"], p["p50"], p["p95"], p["p99"], p["max"], p["mean"]) == (100, 50, 95, 99, 100, 50.5)
    assert percentiles([7.0])["p95"] == 7.0
    assert percentiles([]) == {"n": 0, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}


def test_groups_stay_in_one_process_and_one_big_group_is_split_evenly():
    cfg = Config(users=1000, group_size=10, procs=4)
    owners = [owner_of(u, cfg) for u in range(1000)]
    assert Counter(owners) == {0: 250, 1: 250, 2: 250, 3: 250}
    assert all(len({owners[u] for u in range(g * 10, g * 10 + 10)}) == 1 for g in range(100))
    big = Config(users=1000, group_size=1000, procs=3)
    assert sorted(Counter(owner_of(u, big) for u in range(1000)).values()) == [333, 333, 334]
    assert {owner_of(u, Config(users=10, group_size=5, procs=1)) for u in range(10)} == {0}


def _cfg() -> Config:
    # 4 users, 1 device each, groups {u0,u1} and {u2,u3}: process 0 holds group 0, process 1 group 1
    return Config(users=4, group_size=2, devices_per_user=1, messages=4, rate=10, procs=2, run_id="t")


def _parent() -> LoadGen:
    gen = LoadGen(_cfg())
    for g in gen.groups:
        g.conversation_id = f"c{g.idx}"
    return gen


def test_a_process_expects_only_its_own_devices_and_sends_only_its_own_messages():
    part0 = LoadGen(_cfg(), part=0)
    msgs = part0.plan("m", 4)
    assert [m.group.idx for m in msgs] == [0, 1, 0, 1]
    assert [m.local for m in msgs] == [True, False, True, False]
    assert [m.expected for m in msgs] == [{1}, set(), {0}, set()]
    assert LoadGen(_cfg()).plan("m", 4)[1].expected == {3}  # the parent's view: every device


def test_senders_limits_who_sends():
    gen = LoadGen(Config(users=4, group_size=4, devices_per_user=1, senders=1, run_id="t"))
    assert {m.sender.user.idx for m in gen.plan("m", 5)} == {0}


def _report(sent, got, **stats) -> dict:
    st = Stats()
    for k, v in stats.items():
        setattr(st, k, v)
    return {"sent": sent, "got": got, "stats": vars(st), "lag_ms": [1.0, 2.0], "cpu_s": 0.5,
            "cpu_total_s": 1.0, "t_sent": 1003.5, "drained": 1004.0, "disconnects": []}


def test_merge_puts_every_process_on_the_senders_wall_clock():
    gen = _parent()
    msgs = gen.plan("m", 4)
    # rows: (k, scheduled, sent, ack after s, seq, message_id, sent_at, error, echo after s)
    p0 = _report([(0, 1000.0, 1000.001, 0.010, 1, "a", None, None, None),
                  (2, 1002.0, 1002.001, 0.020, 2, "b", None, None, None)],
                 [(0, 1, 1000.031), (2, 0, 1002.041)], duplicates=1, frames=Counter(message=2))
    p1 = _report([(1, 1001.0, 1001.001, 0.010, 1, "c", None, None, None),
                  (3, 1003.0, None, None, None, None, None, "client:closed", None)],
                 [(1, 3, 1001.011)], frames=Counter(message=1, ack=1), out_of_order=2)
    r = merge_step(gen, msgs, 10.0, [p0, p1], t0=1000.0)
    assert (r["sent"], r["not_sent"], r["acked"], r["procs"]) == (3, 1, 3, 2)
    assert r["deliveries"]["expected"] == 3 and r["deliveries"]["received"] == 3 and r["deliveries"]["lost"] == 0
    assert (r["deliveries"]["duplicates"], r["deliveries"]["out_of_order"]) == (1, 2)
    assert r["frames_in"] == {"message": 3, "ack": 1}
    assert [round(x) for x in (r["deliver_ms"]["p50"], r["deliver_ms"]["max"])] == [30, 40]
    assert round(r["ack_ms"]["max"]) == 20 and r["acks"]["seq_problems"] == {}
    assert r["loop_lag_ms"]["n"] == 4 and r["loadgen_cpu_s"] == 1.0
    assert round(r["setup"]["drain_s"], 3) == 0.5


def test_a_missing_delivery_is_lost_and_seq_gaps_are_found():
    gen = _parent()
    msgs = gen.plan("m", 2)
    p0 = _report([(0, 1000.0, 1000.0, 0.01, 2, "a", None, None, None)], [])
    p1 = _report([(1, 1001.0, 1001.0, 0.01, 1, "c", None, None, None)], [(1, 3, 1001.02)])
    r = merge_step(gen, msgs, 10.0, [p0, p1], t0=1000.0)
    assert r["deliveries"]["lost"] == 1 and r["deliveries"]["messages_with_losses"] == 1
    assert len(r["acks"]["seq_problems"]) == 1  # group 0's only seq is 2, not 1
    assert r["last_delivery_ms"]["n"] == 1


def test_merge_stats_adds_counters_and_concatenates_samples():
    a, b = Stats(), Stats()
    a.errors, b.errors = Counter(rate_limited=2), Counter(rate_limited=1, too_large=1)
    a.error_frames, b.error_frames = [{"x": 1}], [{"y": 2}]
    a.dup_acks, b.dup_acks = 1, 3
    m = merge_stats([vars(a), vars(b)])
    assert m.errors == {"rate_limited": 3, "too_large": 1} and m.dup_acks == 4 and len(m.error_frames) == 2


def test_stats_reset_in_place_for_the_readers_that_hold_it():
    s = Stats()
    s.duplicates, held = 3, s
    s.frames["message"] += 1
    s.reset()
    assert held is s and s.duplicates == 0 and not s.frames


def test_the_random_shape_draws_senders_from_every_user_the_same_in_every_process():
    cfg = Config(users=100, group_size=10, devices_per_user=2, messages=2000, rate=10, procs=2, run_id="r",
                 shape="random")
    gens = [LoadGen(cfg), LoadGen(cfg, 0), LoadGen(cfg, 1)]
    for gen in gens:
        for g in gen.groups:
            g.conversation_id = f"c{g.idx}"
    plans = [[(m.group.idx, m.sender.user.idx, m.sender.device_id) for m in gen.plan("m", 2000)] for gen in gens]
    assert plans[0] == plans[1] == plans[2]
    assert all(u in {x.idx for x in gens[0].groups[g].members} for g, u, _ in plans[0])
    senders = Counter(u for _, u, _ in plans[0])
    assert len(senders) == 100 and max(senders.values()) < 45  # every user sends, none far more than 20
    assert {d for _, _, d in plans[0]} == {"d0", "d1"}
    # warm-up stays one message per group
    assert [m.group.idx for m in gens[0].plan("warmup", 10)] == list(range(10))
