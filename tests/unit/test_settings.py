import pytest

from chat.settings import Settings
from gateway.app import create_app


def test_settings_read_typed_values_from_chat_variables():
    s = Settings.from_env({"CHAT_PORT": "9001", "CHAT_DEV_AUTH": "off", "CHAT_RETENTION_DAYS": "0.5",
                           "CHAT_TOPIC_PREFIX": "x."})
    assert (s.port, s.dev_auth, s.retention_ms, s.events_topic) == (9001, False, 43_200_000, "x.events")
    assert s.gateway_id.endswith("-9001")


def test_production_auth_needs_its_own_secret():
    with pytest.raises(ValueError):
        create_app(Settings(dev_auth=False))
    assert create_app(Settings(dev_auth=False, jwt_secret="s" * 40)) is not None


def test_faust_gets_at_most_info_and_our_logging_config_the_real_level():
    from streams.worker import faust_loglevel

    assert [faust_loglevel(v) for v in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")] == [
        "debug", "info", "info", "info", "info"]


def test_defaults_find_the_stack_that_make_run_starts():
    """`chat topics` and friends need no settings beside `make run` (issue 12)."""
    from infra.run import parse_args

    args = parse_args([])
    assert Settings().kafka_bootstrap == f"127.0.0.1:{args.broker_port}"
    assert Settings().redis_url == f"redis://127.0.0.1:{args.redis_port}/0"
