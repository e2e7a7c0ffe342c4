"""The push egress rule (push/egress.py) as pure logic: which URLs may be registered and which
addresses may be connected to; the send-time guard itself is tested in
tests/integration/test_push_egress.py."""

from __future__ import annotations

import ipaddress

import pytest

from chat.settings import Settings, SettingsError
from push.egress import EgressPolicy, EgressRefused

STRICT = EgressPolicy()
LOOPBACK_OPEN = EgressPolicy(allow_http=True, allow_nets=(ipaddress.ip_network("127.0.0.0/8"),))


@pytest.mark.parametrize("url", [
    "http://hooks.example.com/", "https://127.0.0.1/", "https://127.1/", "https://2130706433/",
    "https://0x7f000001/", "https://0177.0.0.1/", "https://0.0.0.0/", "https://[::]/", "https://[::1]/",
    "https://[::ffff:127.0.0.1]/", "https://[2002:7f00:1::]/", "https://169.254.169.254/",
    "https://[fe80::1%25eth0]/", "https://10.0.0.1/", "https://172.16.0.1/", "https://192.168.1.1/",
    "https://100.64.0.1/", "https://[fd00::1]/", "https://224.0.0.1/", "https://localhost/",
    "https://LOCALHOST./", "https://a.b.localhost/", "https://u:p@hooks.example.com/",
    "https://u@hooks.example.com/", "https://hooks.example.com:99999/", "ftp://hooks.example.com/",
    "javascript:alert(1)", "https:///x", "hooks.example.com/x"])
def test_hostile_or_malformed_urls_are_refused(url):
    with pytest.raises(EgressRefused) as refused:
        STRICT.check_url(url)
    assert refused.value.permanent and refused.value.message


@pytest.mark.parametrize("url", ["https://hooks.example.com/x", "https://8.8.8.8:8443/p?q=1",
                                 "https://[2606:4700::1111]/"])
def test_public_https_urls_pass(url):
    assert STRICT.check_url(url).scheme == "https"


def test_the_allow_list_opens_its_range_and_nothing_else():
    assert LOOPBACK_OPEN.check_url("http://127.0.0.1:8080/hook").port == 8080
    assert LOOPBACK_OPEN.allows("127.0.0.1") and LOOPBACK_OPEN.allows("::ffff:127.0.0.1")
    for address in ("::1", "169.254.169.254", "10.0.0.1", "0.0.0.0"):
        assert not LOOPBACK_OPEN.allows(address), address
    assert not STRICT.allows("127.0.0.1") and STRICT.allows("93.184.216.34")


def test_a_bad_allow_list_stops_start_up():
    assert [str(n) for n in Settings(push_allow_cidrs=" 10.0.0.0/8, fd00::/8 ").push_allow_networks] == [
        "10.0.0.0/8", "fd00::/8"]
    with pytest.raises(SettingsError, match="CHAT_PUSH_ALLOW_CIDRS"):
        Settings.from_env({"CHAT_PUSH_ALLOW_CIDRS": "10.0.0.0/8,not-a-net"})
