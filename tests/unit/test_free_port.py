"""infra.services.free_port picks ports outside the kernel's ephemeral range, which outgoing
connections take their source ports from."""

from __future__ import annotations

import socket

from infra.services import LOWEST_PICKED_PORT, ephemeral_ports, free_port


def test_a_picked_port_is_below_the_ephemeral_range_and_bindable():
    low, high = ephemeral_ports()
    assert low <= high
    for _ in range(50):
        port = free_port()
        assert LOWEST_PICKED_PORT <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
