"""A gateway reachable from other machines never serves development sign-in or the public
development secret unless told to: started on ``CHAT_HOST=0.0.0.0`` with otherwise default
settings, it refuses to start and says which settings to set."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.support import System


def dev_token(port: int) -> int | None:
    """The status of ``POST /v1/dev/token`` on the gateway, None while nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/dev/token", method="POST",
                                     data=json.dumps({"user_id": "root"}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def test_a_gateway_bound_to_every_interface_with_default_auth_refuses_to_start(stack, tmp_path):
    system = System(stack, tmp_path, CHAT_HOST="0.0.0.0")
    try:
        gateway = system.start_gateway(wait=False)
        deadline = time.monotonic() + 60
        while gateway.running and time.monotonic() < deadline:
            status = dev_token(gateway.port_number)  # type: ignore[attr-defined]
            assert status is None, f"the gateway on 0.0.0.0 serves POST /v1/dev/token: {status}"
            time.sleep(0.2)
        assert not gateway.running, "the gateway on 0.0.0.0 is still running"
        assert gateway.returncode == 1
        log = gateway.log_tail(20)
        assert "gateway: refusing to start: CHAT_HOST='0.0.0.0' is not a loopback address" in log
        assert "set CHAT_JWT_SECRET" in log and "CHAT_DEV_AUTH=true" in log
        assert "Traceback" not in log
    finally:
        system.stop()
