"""Which requests may use the web client's session cookie (gateway.auth.check_origin): the
CSRF guard beside SameSite=Strict, and CHAT_WEB_ORIGINS for a gateway behind a proxy."""

import pytest
from aiohttp.test_utils import make_mocked_request

from chat.errors import Forbidden
from chat.settings import Settings
from gateway.auth import check_origin

HOST = "chat.example.com"
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket"}


def request(method: str, **headers: str):
    return make_mocked_request(method, "/v1/conversations", headers={"Host": HOST, **headers})


@pytest.mark.parametrize("method, headers", [
    ("GET", {}), ("HEAD", {}), ("GET", {"Sec-Fetch-Site": "same-origin"}), ("GET", {"Sec-Fetch-Site": "none"}),
    ("POST", {"Origin": f"https://{HOST}"}), ("DELETE", {"Origin": f"http://{HOST}"}),
    ("GET", {"Origin": f"https://{HOST}", **UPGRADE}),
])
def test_the_web_clients_own_requests_pass(method, headers):
    check_origin(Settings(), request(method, **headers))


@pytest.mark.parametrize("method, headers", [
    ("POST", {}), ("PUT", {}), ("PATCH", {}), ("DELETE", {}), ("GET", UPGRADE),
    ("POST", {"Origin": "null"}), ("POST", {"Origin": f"https://{HOST}.evil.com"}),
    ("GET", {"Origin": "https://evil.com"}), ("GET", {"Origin": f"ftp://{HOST}"}),
    ("GET", {"Sec-Fetch-Site": "cross-site"}), ("GET", {"Sec-Fetch-Site": "same-site"}),
    ("POST", {"Origin": f"https://{HOST}", "Sec-Fetch-Site": "cross-site"}),
    ("GET", {"Origin": "https://evil.com", **UPGRADE}),
])
def test_other_origins_and_origin_less_writes_are_refused(method, headers):
    with pytest.raises(Forbidden):
        check_origin(Settings(), request(method, **headers))


def test_configured_web_origins_are_the_only_ones():
    settings = Settings(web_origins="https://chat.example.com/, https://app.example.com")
    for origin in ("https://chat.example.com", "https://app.example.com"):
        check_origin(settings, request("POST", Origin=origin))
    for origin in ("http://chat.example.com", "https://other.example.com"):
        with pytest.raises(Forbidden):
            check_origin(settings, request("POST", Origin=origin))
