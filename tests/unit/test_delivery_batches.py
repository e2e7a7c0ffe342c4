"""``projections.delivery.batched``: one DeliveryBatch record per gateway and projected batch."""

from chat.codec import default_codec
from chat.events import BatchedDelivery, Delivery, DeliveryBatch, DeviceTarget, Target
from projections.delivery import batched


def d(frame: bytes, user: str = "u") -> Delivery:
    return Delivery([Target(user)], frame)


def test_one_record_per_gateway_keeping_each_gateways_order():
    routed = [("g1", d(b"1")), ("g2", d(b"a")), ("g1", d(b"2")), ("g2", d(b"b")), ("g1", d(b"3"))]
    b = BatchedDelivery.of
    assert batched(routed) == [("g1", DeliveryBatch([b(d(b"1")), b(d(b"2")), b(d(b"3"))])),
                               ("g2", DeliveryBatch([b(d(b"a")), b(d(b"b"))]))]


def test_whole_users_and_single_devices_are_kept_apart_and_read_back_as_targets():
    delivery = Delivery([Target("a"), Target("b", "phone"), Target("c")], b"f", "r", 202)
    batched_ = BatchedDelivery.of(delivery)
    assert (batched_.users, batched_.devices) == (["a", "c"], [DeviceTarget("b", "phone")])
    assert set(batched_.targets) == set(delivery.targets) and batched_.status == 202


def test_nothing_routed_makes_no_record():
    assert batched([]) == []


def test_a_record_is_cut_past_max_bytes_and_an_oversized_delivery_goes_alone():
    routed = [("g", d(b"x" * 40)), ("g", d(b"y" * 40)), ("g", d(b"z" * 40)), ("g", d(b"w" * 500)), ("g", d(b"v"))]
    records = batched(routed, max_bytes=100)
    assert [[x.frame[:1] for x in b.deliveries] for _, b in records] == [[b"x", b"y"], [b"z"], [b"w"], [b"v"]]
    assert [x for _, b in records for x in b.deliveries] == [BatchedDelivery.of(x) for _, x in routed]


def test_a_batch_round_trips_through_the_codec():
    codec = default_codec()
    (_, batch), = batched([("g", Delivery([Target("a", "phone"), Target("b")], b'{"type":"ack"}', "r", 202)),
                           ("g", d(b'{"type":"message"}'))])
    assert codec.decode(codec.encode(batch)).event == batch


def _encoded_sizes(records):
    codec = default_codec()
    return [len(codec.encode(batch)) for _, batch in records]


def test_a_delivery_to_more_users_than_fit_is_split_across_records_under_the_bound():
    users = [f"user-{i:05d}-of-a-big-group" for i in range(50_000)]  # ~1.4 MB of user ids
    routed = [("g", d(b"before", "a")), ("g", Delivery([Target(u) for u in users], b'{"type":"message"}')),
              ("g", d(b"after", "a"))]
    records = batched(routed)
    assert max(_encoded_sizes(records)) <= 256 * 1024 + 1024  # Kafka's limit is 1 MiB
    pieces = [x for _, b in records for x in b.deliveries]
    assert pieces[0].frame == b"before" and pieces[-1].frame == b"after"
    middle = pieces[1:-1]
    assert len(middle) > 1 and {x.frame for x in middle} == {b'{"type":"message"}'}
    assert [u for x in middle for u in x.users] == users  # every user once, in order


def test_a_split_delivery_keeps_its_devices_and_answers_its_request_once():
    targets = [Target(f"u{i:06d}", f"device-{i:06d}") for i in range(20_000)] + [Target("whole")]
    (gateway, batch), *rest = records = batched([("g", Delivery(targets, b"f", "req-1", 201))], max_bytes=64 * 1024)
    assert gateway == "g" and rest and max(_encoded_sizes(records)) <= 64 * 1024 + 1024
    pieces = [x for _, b in records for x in b.deliveries]
    assert [p.request_id for p in pieces] == ["req-1"] + [None] * (len(pieces) - 1)
    assert pieces[0].status == 201
    key = lambda t: (t.user_id, t.device_id or "")  # noqa: E731
    assert sorted((t for p in pieces for t in p.targets), key=key) == sorted(targets, key=key)
