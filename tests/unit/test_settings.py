import pytest

from chat.settings import DEV_JWT_SECRET, Settings, SettingsError, is_loopback
from gateway.app import create_app

SECRET = "s" * 40


def test_settings_read_typed_values_from_chat_variables():
    s = Settings.from_env({"CHAT_PORT": "9001", "CHAT_DEV_AUTH": "off", "CHAT_RETENTION_DAYS": "0.5",
                           "CHAT_TOPIC_PREFIX": "x."})
    assert (s.port, s.dev_auth, s.retention_ms, s.events_topic) == (9001, False, 43_200_000, "x.events")
    assert s.gateway_id.endswith("-9001")


def test_production_auth_needs_its_own_secret():
    with pytest.raises(ValueError):
        create_app(Settings(dev_auth=False))
    assert create_app(Settings(dev_auth=False, jwt_secret=SECRET)) is not None


def test_loopback_is_127_slash_8_ipv6_loopback_and_localhost_only():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "", "10.0.0.1", "192.168.1.2", "example.com",
                                     "localhost.example.com", "128.0.0.1"]))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.1.2.3", "chat.example.com"])
@pytest.mark.parametrize("dev_auth", ["", "true", "false"])
def test_a_reachable_gateway_refuses_the_public_dev_secret(host, dev_auth):
    """Anyone could sign a token for any user with it; whatever CHAT_DEV_AUTH says."""
    settings = Settings.from_env({"CHAT_HOST": host, "CHAT_DEV_AUTH": dev_auth})
    assert settings.jwt_secret == DEV_JWT_SECRET
    with pytest.raises(SettingsError) as info:
        create_app(settings)
    assert "CHAT_JWT_SECRET" in str(info.value) and "CHAT_DEV_AUTH=true" in str(info.value)
    assert f"CHAT_HOST={host!r}" in str(info.value)


def test_a_reachable_gateway_signs_in_developers_only_when_told_to():
    for env, dev_sign_in in [({}, False), ({"CHAT_DEV_AUTH": ""}, False), ({"CHAT_DEV_AUTH": "false"}, False),
                             ({"CHAT_DEV_AUTH": "true"}, True)]:
        settings = Settings.from_env({"CHAT_HOST": "0.0.0.0", "CHAT_JWT_SECRET": SECRET, **env})
        assert settings.auth_problem() is None and create_app(settings) is not None
        assert settings.dev_sign_in is dev_sign_in, env


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_on_loopback_dev_sign_in_is_on_unless_switched_off(host):
    assert Settings(host=host).dev_sign_in and create_app(Settings(host=host)) is not None
    assert Settings(host=host, dev_auth=True).auth_problem() is None
    assert not Settings(host=host, dev_auth=False, jwt_secret=SECRET).dev_sign_in
    assert "CHAT_JWT_SECRET" in Settings(host=host, dev_auth=False).auth_problem()


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


IDP = {"CHAT_OIDC_ISSUER": "https://idp.example.com/realms/chat", "CHAT_JWT_AUDIENCE": "chat"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "chat.example.com", "127.0.0.1"])
def test_an_identity_providers_key_set_is_a_real_secret_for_the_loopback_guard(host):
    """Issue 13 item 9: a gateway on any bind starts with a JWKS and no CHAT_JWT_SECRET; the
    public development secret then verifies nothing, and dev sign-in stays off off loopback."""
    for env in (IDP, {"CHAT_JWKS_URL": "https://idp.example.com/jwks.json", "CHAT_JWT_ISSUER": "https://idp",
                      "CHAT_JWT_AUDIENCE": "chat"}):
        settings = Settings.from_env({"CHAT_HOST": host, **env})
        assert settings.jwks_configured and settings.auth_problem() is None, env
        assert settings.hs_secret == (DEV_JWT_SECRET if host == "127.0.0.1" else None)
        assert settings.dev_sign_in is (host == "127.0.0.1")


def test_dev_sign_in_off_loopback_still_needs_a_secret_of_its_own_beside_a_key_set():
    settings = Settings.from_env({"CHAT_HOST": "0.0.0.0", "CHAT_DEV_AUTH": "true", **IDP})
    assert "CHAT_JWT_SECRET" in settings.auth_problem()
    assert Settings.from_env({"CHAT_HOST": "127.0.0.1", "CHAT_DEV_AUTH": "false", **IDP}).hs_secret is None


@pytest.mark.parametrize("env, needs", [
    ({"CHAT_OIDC_ISSUER": "https://idp.example.com"}, "CHAT_JWT_AUDIENCE"),
    ({"CHAT_JWKS_URL": "https://idp.example.com/jwks", "CHAT_JWT_AUDIENCE": "chat"}, "CHAT_JWT_ISSUER"),
    ({**IDP, "CHAT_JWKS_ALGORITHMS": "RS256,HS256"}, "CHAT_JWKS_ALGORITHMS"),
    ({**IDP, "CHAT_JWKS_ALGORITHMS": "none"}, "CHAT_JWKS_ALGORITHMS"),
    ({**IDP, "CHAT_OIDC_ISSUER": "http://idp.example.com"}, "https"),
    ({**IDP, "CHAT_JWKS_URL": "http://10.0.0.5/jwks", "CHAT_JWT_ISSUER": "x"}, "https"),
])
def test_an_incomplete_or_weak_key_set_configuration_refuses_to_start(env, needs):
    settings = Settings.from_env({"CHAT_HOST": "0.0.0.0", **env})
    with pytest.raises(SettingsError) as info:
        create_app(settings)
    assert needs in str(info.value)
    assert Settings.from_env({**IDP, "CHAT_OIDC_ISSUER": "http://127.0.0.1:9000"}).auth_problem() is None
