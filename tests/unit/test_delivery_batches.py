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
