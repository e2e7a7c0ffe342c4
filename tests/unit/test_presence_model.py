"""Presence decisions: online at once, offline after the debounce or the TTL, no storms."""

from __future__ import annotations

from chat.events import PresenceChanged, PresenceSignal
from streams.presence_model import OFFLINE, ONLINE, PresenceBook, UserPresence, on_signal, on_tick, recovered

TTL, DEBOUNCE = 60_000, 5_000


def sig(kind: str, devices: list[str], at: int, gateway: str = "gw1", user: str = "alice") -> PresenceSignal:
    return PresenceSignal(user, gateway, kind, devices, at, devices[0] if kind == "connected" else None)


def book() -> PresenceBook:
    return PresenceBook(TTL, DEBOUNCE)


def test_first_device_goes_online_at_once_with_its_time():
    b = book()
    assert b.signal(sig("connected", ["phone"], 1_000), now_ms=1_005) == [
        PresenceChanged("alice", ONLINE, 1_000, 1_005)]
    assert b.online("alice")


def test_second_device_and_heartbeats_change_nothing():
    b = book()
    b.signal(sig("connected", ["phone"], 1_000), 1_000)
    assert b.signal(sig("connected", ["phone", "laptop"], 2_000), 2_000) == []
    assert b.signal(sig("connected", ["tablet"], 2_500, gateway="gw2"), 2_500) == []
    assert b.signal(sig("heartbeat", ["phone", "laptop"], 15_000), 15_000) == []
    assert b.tick(16_000) == []


def test_offline_only_after_the_debounce():
    b = book()
    b.signal(sig("connected", ["phone"], 1_000), 1_000)
    assert b.signal(sig("disconnected", [], 3_000), 3_000) == []
    assert b.tick(3_000 + DEBOUNCE - 1) == []
    assert b.online("alice")
    assert b.tick(3_000 + DEBOUNCE) == [PresenceChanged("alice", OFFLINE, 3_000, 3_000 + DEBOUNCE)]
    assert not b.online("alice")
    assert "alice" not in b.users  # forgotten: nothing left to watch


def test_flapping_within_the_debounce_makes_no_events():
    b = book()
    events = b.signal(sig("connected", ["phone"], 0), 0)
    for i in range(1, 20):
        t = i * 400
        events += b.signal(sig("disconnected", [], t), t)
        events += b.tick(t + 100)
        events += b.signal(sig("connected", ["phone"], t + 200), t + 200)
        events += b.tick(t + 300)
    assert [e.status for e in events] == [ONLINE]
    b.signal(sig("disconnected", [], 10_000), 10_000)
    assert [e.status for e in b.tick(10_000 + DEBOUNCE)] == [OFFLINE]


def test_online_while_any_device_on_any_gateway():
    b = book()
    b.signal(sig("connected", ["phone"], 0, gateway="gw1"), 0)
    b.signal(sig("connected", ["laptop"], 10, gateway="gw2"), 10)
    b.signal(sig("disconnected", [], 20, gateway="gw1"), 20)
    assert b.tick(20 + DEBOUNCE * 3) == []
    b.signal(sig("disconnected", [], 30_000, gateway="gw2"), 30_000)
    assert [e.last_seen for e in b.tick(30_000 + DEBOUNCE)] == [30_000]


def test_dead_gateway_goes_offline_when_its_ttl_runs_out_with_last_heartbeat():
    b = book()
    b.signal(sig("connected", ["phone"], 0), 0)
    b.signal(sig("heartbeat", ["phone"], 15_000), 15_000)
    assert b.tick(15_000 + TTL - 1) == []
    assert b.tick(15_000 + TTL) == [PresenceChanged("alice", OFFLINE, 15_000, 15_000 + TTL)]


def test_a_signal_applied_twice_changes_nothing():
    state, first = on_signal(UserPresence(), sig("connected", ["phone"], 5), now_ms=5, ttl_ms=TTL)
    again, second = on_signal(state, sig("connected", ["phone"], 5), now_ms=6, ttl_ms=TTL)
    assert len(first) == 1 and second == [] and again == state


def test_a_stale_heartbeat_replayed_late_does_not_keep_a_user_online():
    b = book()
    b.signal(sig("connected", ["phone"], 0), 0)
    late = 200_000
    assert b.signal(sig("heartbeat", ["phone"], 1_000), late) == []
    assert [e.status for e in b.tick(late)] == [OFFLINE]


def test_recovered_user_stays_online_until_a_gateway_says_otherwise_or_it_expires():
    state = recovered(last_seen=100, until_ms=20_000)
    assert on_tick("alice", state, now_ms=19_999, debounce_ms=DEBOUNCE)[1] == []
    state2, events = on_tick("alice", state, now_ms=20_000, debounce_ms=DEBOUNCE)
    assert events == [PresenceChanged("alice", OFFLINE, 100, 20_000)] and state2.status == OFFLINE
    # A live gateway's heartbeat keeps them online past the recovered word, with no event.
    state3, events = on_signal(state, sig("heartbeat", ["phone"], 10_000), now_ms=10_000, ttl_ms=TTL)
    assert events == [] and on_tick("alice", state3, now_ms=25_000, debounce_ms=DEBOUNCE)[1] == []


def test_a_tick_looks_only_at_users_whose_time_has_come(monkeypatch):
    import streams.presence_model as model

    b = book()
    for i in range(1_000):
        b.signal(sig("connected", ["phone"], 1_000, user=f"u{i}"), 1_000)
    b.signal(sig("disconnected", [], 2_000, user="u7"), 2_000)
    looked: list[str] = []
    real = model.on_tick
    monkeypatch.setattr(model, "on_tick", lambda user_id, *a, **k: looked.append(user_id) or real(user_id, *a, **k))
    assert b.tick(2_500) == [] and looked == []  # nobody is due: nobody is looked at
    assert b.tick(2_000 + DEBOUNCE) == [PresenceChanged("u7", OFFLINE, 2_000, 2_000 + DEBOUNCE)]
    assert looked == ["u7"] and "u7" not in b.users
    # The others' word expires TTL after their connect, unless a heartbeat renews it.
    b.signal(sig("heartbeat", ["phone"], 50_000, user="u1"), 50_000)
    changes = b.tick(1_000 + TTL)
    assert len(changes) == 998 and {c.user_id for c in changes} == {f"u{i}" for i in range(1_000)} - {"u1", "u7"}
    assert b.online("u1") and not b.online("u2")
