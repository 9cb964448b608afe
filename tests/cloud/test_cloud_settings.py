"""clouds.yaml and OS_* parsing: every way to name a cloud, every bad or missing key named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from csi_xloud.cloud.settings import (
    COMPUTE,
    STORAGE,
    AuthType,
    BadSettings,
    CloudSettings,
    load_cloud_settings,
)

PASSWORD_ENV = {
    "OS_AUTH_URL": "https://keystone.example:5000/v3",
    "OS_USERNAME": "demo",
    "OS_PASSWORD": "s3cret-pw",
    "OS_PROJECT_NAME": "demo",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_PROJECT_DOMAIN_NAME": "Default",
    "OS_REGION_NAME": "RegionOne",
}


def write_clouds(path: Path, clouds: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"clouds": clouds}), encoding="utf-8")
    path.chmod(0o600)
    return path


def password_cloud(**extra: Any) -> dict[str, Any]:
    cloud: dict[str, Any] = {
        "auth": {
            "auth_url": "http://127.0.0.1:5000/identity",
            "username": "demo",
            "password": "pw-123",
            "project_name": "demo",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": "RegionOne",
    }
    cloud.update(extra)
    return cloud


def load_env(env: dict[str, str]) -> CloudSettings:
    return load_cloud_settings(None, None, env, search_paths=[])


def test_password_from_environment() -> None:
    settings = load_env(PASSWORD_ENV)
    assert settings.auth_type is AuthType.PASSWORD
    assert settings.username == "demo" and settings.project_name == "demo"
    assert settings.region_name == "RegionOne" and settings.interface == "public"
    assert settings.verify is True and settings.tls_verify() is True


def test_secrets_stay_out_of_repr() -> None:
    env = {
        **PASSWORD_ENV,
        "OS_APPLICATION_CREDENTIAL_SECRET": "appcred-secret-9",
        "OS_TOKEN": "tok-abc-77",
        "OS_AUTH_TYPE": "password",
    }
    text = repr(load_env(env))
    for secret in ("s3cret-pw", "appcred-secret-9", "tok-abc-77"):
        assert secret not in text


def test_cloud_from_clouds_yaml_by_flag(tmp_path: Path) -> None:
    path = write_clouds(
        tmp_path / "clouds.yaml", {"one": password_cloud(), "two": password_cloud(interface="internal")}
    )
    settings = load_cloud_settings("two", path, {}, search_paths=[])
    assert settings.interface == "internal"
    assert settings.auth_url == "http://127.0.0.1:5000/identity"
    assert "two" in settings.source


def test_cloud_from_os_cloud_and_os_client_config_file(tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "c.yaml", {"a": password_cloud(), "b": password_cloud(region_name="R2")})
    settings = load_cloud_settings(
        None, None, {"OS_CLOUD": "b", "OS_CLIENT_CONFIG_FILE": str(path)}, search_paths=[]
    )
    assert settings.region_name == "R2"


def test_search_path_order(tmp_path: Path) -> None:
    first = write_clouds(tmp_path / "first.yaml", {"x": password_cloud(region_name="first")})
    second = write_clouds(tmp_path / "second.yaml", {"x": password_cloud(region_name="second")})
    settings = load_cloud_settings("x", None, {}, search_paths=[tmp_path / "missing.yaml", first, second])
    assert settings.region_name == "first"


def test_default_search_path_uses_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./clouds.yaml here
    home_cfg = tmp_path / "home/.config/openstack"
    home_cfg.mkdir(parents=True)
    write_clouds(home_cfg / "clouds.yaml", {"mine": password_cloud(region_name="home")})
    settings = load_cloud_settings("mine", None, {"HOME": str(tmp_path / "home")})
    assert settings.region_name == "home"


def test_single_cloud_is_chosen_without_a_name(tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"only": password_cloud()})
    assert load_cloud_settings(None, path, {}, search_paths=[]).source.startswith("cloud 'only'")


def test_application_credential(tmp_path: Path) -> None:
    cloud = {
        "auth_type": "v3applicationcredential",
        "auth": {
            "auth_url": "http://127.0.0.1/identity/v3",
            "application_credential_id": "ac1",
            "application_credential_secret": "sec",
        },
    }
    path = write_clouds(tmp_path / "clouds.yaml", {"ac": cloud})
    settings = load_cloud_settings("ac", path, {}, search_paths=[])
    assert settings.auth_type is AuthType.APPLICATION_CREDENTIAL
    assert settings.application_credential_id == "ac1"


def test_token_from_os_token() -> None:
    settings = load_env({"OS_AUTH_URL": "http://127.0.0.1/identity", "OS_TOKEN": "gAAAAtoken"})
    assert settings.auth_type is AuthType.TOKEN and settings.token == "gAAAAtoken"


def test_none_auth_with_overrides() -> None:
    settings = load_env(
        {
            "OS_AUTH_TYPE": "none",
            "OS_BLOCK_STORAGE_ENDPOINT_OVERRIDE": "http://127.0.0.1:1/volume/v3/p1",
            "OS_COMPUTE_ENDPOINT_OVERRIDE": "http://127.0.0.1:1/compute/v2.1",
        }
    )
    assert settings.auth_type is AuthType.NONE
    assert settings.endpoint_overrides == {
        STORAGE: "http://127.0.0.1:1/volume/v3/p1",
        COMPUTE: "http://127.0.0.1:1/compute/v2.1",
    }


def test_tls_settings(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(BadSettings, match=r"OS_CACERT: .* holds no usable CA certificate"):
        load_env({**PASSWORD_ENV, "OS_CACERT": str(bundle)})
    assert load_env({**PASSWORD_ENV, "OS_INSECURE": "true"}).tls_verify() is False
    assert load_env({**PASSWORD_ENV, "OS_INSECURE": "false"}).verify is True
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud(verify=False)})
    assert load_cloud_settings("c", path, {}, search_paths=[]).tls_verify() is False


def test_tuning_keys() -> None:
    settings = load_env({**PASSWORD_ENV, "OS_API_TIMEOUT": "7.5", "OS_RATE_LIMIT": "3"})
    assert settings.tuning.timeout_seconds == 7.5
    assert settings.tuning.requests_per_second == 3


def drop(env: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in keys}


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (drop(PASSWORD_ENV, "OS_AUTH_URL"), "OS_AUTH_URL"),
        ({**PASSWORD_ENV, "OS_AUTH_URL": "keystone:5000"}, "OS_AUTH_URL"),
        (drop(PASSWORD_ENV, "OS_USERNAME"), "OS_USERNAME or OS_USER_ID"),
        (drop(PASSWORD_ENV, "OS_PASSWORD"), "OS_PASSWORD"),
        (drop(PASSWORD_ENV, "OS_PROJECT_NAME"), "OS_PROJECT_ID or OS_PROJECT_NAME"),
        ({**PASSWORD_ENV, "OS_AUTH_TYPE": "kerberos"}, "OS_AUTH_TYPE"),
        ({**PASSWORD_ENV, "OS_INTERFACE": "private"}, "OS_INTERFACE"),
        ({**PASSWORD_ENV, "OS_INSECURE": "maybe"}, "OS_INSECURE"),
        ({**PASSWORD_ENV, "OS_VERIFY": "perhaps"}, "OS_VERIFY"),
        ({**PASSWORD_ENV, "OS_CACERT": "/nonexistent/ca.pem"}, "OS_CACERT"),
        ({**PASSWORD_ENV, "OS_API_TIMEOUT": "soon"}, "OS_API_TIMEOUT"),
        ({**PASSWORD_ENV, "OS_API_TIMEOUT": "0"}, "OS_API_TIMEOUT"),
        ({**PASSWORD_ENV, "OS_RATE_LIMIT": "-1"}, "OS_RATE_LIMIT"),
        ({**PASSWORD_ENV, "OS_COMPUTE_ENDPOINT_OVERRIDE": "ftp://x"}, "OS_COMPUTE_ENDPOINT_OVERRIDE"),
        (
            {
                "OS_AUTH_URL": "http://k/v3",
                "OS_AUTH_TYPE": "v3applicationcredential",
                "OS_APPLICATION_CREDENTIAL_ID": "id",
            },
            "OS_APPLICATION_CREDENTIAL_SECRET",
        ),
        (
            {
                "OS_AUTH_URL": "http://k/v3",
                "OS_AUTH_TYPE": "v3applicationcredential",
                "OS_APPLICATION_CREDENTIAL_SECRET": "s",
            },
            "OS_APPLICATION_CREDENTIAL_ID or OS_APPLICATION_CREDENTIAL_NAME",
        ),
        (
            {
                "OS_AUTH_URL": "http://k/v3",
                "OS_AUTH_TYPE": "v3applicationcredential",
                "OS_APPLICATION_CREDENTIAL_SECRET": "s",
                "OS_APPLICATION_CREDENTIAL_NAME": "n",
            },
            "OS_USERNAME or OS_USER_ID",
        ),
        ({"OS_AUTH_URL": "http://k/v3", "OS_AUTH_TYPE": "token"}, "OS_TOKEN"),
        (
            {"OS_AUTH_TYPE": "none", "OS_COMPUTE_ENDPOINT_OVERRIDE": "http://c"},
            "OS_BLOCK_STORAGE_ENDPOINT_OVERRIDE",
        ),
        (
            {"OS_AUTH_TYPE": "none", "OS_BLOCK_STORAGE_ENDPOINT_OVERRIDE": "http://v"},
            "OS_COMPUTE_ENDPOINT_OVERRIDE",
        ),
    ],
)
def test_bad_environment_names_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(BadSettings) as caught:
        load_env(env)
    message = str(caught.value)
    assert named in message
    assert "\n" not in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    ("cloud", "named"),
    [
        ({"auth": {"username": "u", "password": "p", "project_name": "p"}}, "clouds.c.auth.auth_url"),
        ({"auth": {"auth_url": "http://k", "password": "p", "project_name": "p"}}, "clouds.c.auth.username"),
        ({"auth": {"auth_url": "http://k", "username": "u", "project_name": "p"}}, "clouds.c.auth.password"),
        ({"auth": {"auth_url": "http://k", "username": "u", "password": "p"}}, "clouds.c.auth.project_id"),
        ({"auth": "nope"}, "clouds.c.auth"),
        (password_cloud(auth_type="saml2"), "clouds.c.auth_type"),
        (password_cloud(interface="external"), "clouds.c.interface"),
        (password_cloud(verify="sometimes"), "clouds.c.verify"),
        (password_cloud(cacert="/nonexistent.pem"), "clouds.c.cacert"),
        (password_cloud(api_timeout="x"), "clouds.c.api_timeout"),
        (password_cloud(rate_limit=0), "clouds.c.rate_limit"),
        (password_cloud(region_name={"a": 1}), "clouds.c.region_name"),
        (
            password_cloud(block_storage_endpoint_override="volume.local"),
            "clouds.c.block_storage_endpoint_override",
        ),
        (
            {"auth_type": "none", "compute_endpoint_override": "http://c"},
            "clouds.c.block_storage_endpoint_override",
        ),
    ],
)
def test_bad_clouds_yaml_names_the_key(tmp_path: Path, cloud: dict[str, Any], named: str) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": cloud})
    with pytest.raises(BadSettings) as caught:
        load_cloud_settings("c", path, {}, search_paths=[])
    assert named in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unknown_cloud_name(tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"a": password_cloud()})
    with pytest.raises(BadSettings, match="--cloud: cloud 'b' is not in"):
        load_cloud_settings("b", path, {}, search_paths=[])


def test_missing_cloud_config_file(tmp_path: Path) -> None:
    with pytest.raises(BadSettings, match="--cloud-config"):
        load_cloud_settings("a", tmp_path / "nope.yaml", {}, search_paths=[])
    with pytest.raises(BadSettings, match="OS_CLIENT_CONFIG_FILE"):
        load_cloud_settings(
            None, None, {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "nope.yaml")}, search_paths=[]
        )


def test_cloud_named_but_no_clouds_yaml_anywhere() -> None:
    with pytest.raises(BadSettings, match=r"no clouds\.yaml holds cloud 'x'"):
        load_cloud_settings("x", None, {}, search_paths=[])


def test_malformed_yaml(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds: [unclosed", encoding="utf-8")
    path.chmod(0o600)
    with pytest.raises(BadSettings, match="cannot read"):
        load_cloud_settings("a", path, {}, search_paths=[])
    path.write_text("other: 1\n", encoding="utf-8")
    with pytest.raises(BadSettings, match="no 'clouds' mapping"):
        load_cloud_settings("a", path, {}, search_paths=[])


def test_several_clouds_and_no_choice(tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"a": password_cloud(), "b": password_cloud()})
    with pytest.raises(BadSettings, match="holds 2 clouds; choose one"):
        load_cloud_settings(None, path, {}, search_paths=[])


def test_rate_limit_per_service(tmp_path: Path) -> None:
    cloud = password_cloud(rate_limit={"block-storage": 5, "compute": 2.5})
    path = write_clouds(tmp_path / "clouds.yaml", {"c": cloud})
    settings = load_cloud_settings("c", path, {}, search_paths=[])
    assert settings.rate_for("volume") == 5
    assert settings.rate_for("compute") == 2.5
    assert settings.rate_for("identity") == settings.tuning.requests_per_second


def test_the_bucket_holds_ten_seconds_of_the_rate_unless_a_burst_is_set(tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud(rate_limit={"compute": 2.5}),
                                                   "d": password_cloud(rate_limit=20, rate_limit_burst=30)})
    default = load_cloud_settings("c", path, {}, search_paths=[])
    assert default.tuning.burst_for(default.rate_for("volume")) == 500
    assert default.tuning.burst_for(default.rate_for("compute")) == 25
    assert default.tuning.burst_for(0.01) == 1
    chosen = load_cloud_settings("d", path, {}, search_paths=[])
    assert chosen.tuning.burst_for(chosen.rate_for("volume")) == 30
    from_env = load_env({**PASSWORD_ENV, "OS_RATE_LIMIT_BURST": "7"})
    assert from_env.tuning.burst_for(50) == 7


@pytest.mark.parametrize("burst", [0, 2.5, "many"])
def test_a_bad_burst_is_refused_by_name(tmp_path: Path, burst: object) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud(rate_limit_burst=burst)})
    with pytest.raises(BadSettings, match=r"clouds\.c\.rate_limit_burst"):
        load_cloud_settings("c", path, {}, search_paths=[])


@pytest.mark.parametrize(
    ("rates", "named"),
    [({"network": 3}, "clouds.c.rate_limit.network"), ({"compute": "fast"}, "clouds.c.rate_limit.compute")],
)
def test_bad_rate_limit_per_service(tmp_path: Path, rates: dict[str, Any], named: str) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud(rate_limit=rates)})
    with pytest.raises(BadSettings, match=named):
        load_cloud_settings("c", path, {}, search_paths=[])


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602])
def test_a_clouds_yaml_every_user_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud()})
    path.chmod(mode)
    with pytest.raises(BadSettings, match=f"every user \\(mode {mode:04o}\\).*chmod it to 0600"):
        load_cloud_settings("c", path, {}, search_paths=[])


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o440, 0o640])
def test_owner_and_group_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = write_clouds(tmp_path / "clouds.yaml", {"c": password_cloud()})
    path.chmod(mode)
    assert load_cloud_settings("c", path, {}, search_paths=[]).auth_url
