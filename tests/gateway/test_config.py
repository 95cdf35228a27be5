"""Configuration: TOML, environment overrides, validation messages that name the key."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import load_settings
from gateway.errors import ConfigError
from support.gateway import settings_dict, write_toml

pytestmark = pytest.mark.unit


def test_file_values_and_relative_paths(tmp_path: Path) -> None:
    data = settings_dict(tmp_path)
    data["storage"]["spool_dir"] = "data/spool"
    data["catalog"]["url"] = "sqlite:///data/cat.db"
    data["dicom"]["allowed_aes"] = [
        {"ae_title": "SCANNER1", "host": "10.0.0.5", "max_associations": 2}
    ]
    (tmp_path / "conf").mkdir()
    path = write_toml(tmp_path / "conf" / "gw.toml", data)
    s = load_settings(path, environ={})
    assert s.storage.spool_dir == (tmp_path / "conf" / "data" / "spool").resolve()
    assert s.catalog.url == f"sqlite:///{(tmp_path / 'conf' / 'data' / 'cat.db').resolve()}"
    (ae,) = s.dicom.allowed_aes
    assert (ae.ae_title, ae.host, ae.max_associations) == ("SCANNER1", "10.0.0.5", 2)
    with pytest.raises(Exception, match="frozen"):
        s.dicom.port = 1  # type: ignore[misc]


def test_environment_overrides_every_level(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path))
    env = {
        "IHGAMP__DICOM__PORT": "11113",
        "IHGAMP__DICOM__TLS__REQUIRE_CLIENT_CERTIFICATE": "false",
        "IHGAMP__DICOM__SOP_CLASSES": '["1.2.840.10008.5.1.4.1.1.77.1.6"]',
        "IHGAMP__WORKER__COUNT": "3",
        "IHGAMP__MODEL__DEVICE": "cuda",
        "IHGAMP__CATALOG__URL": "postgresql+psycopg://gw@db/ihgamp",
        "UNRELATED": "x",
    }
    s = load_settings(path, environ=env)
    assert s.dicom.port == 11113 and s.worker.count == 3 and s.model.device == "cuda"
    assert s.dicom.tls.require_client_certificate is False
    assert s.dicom.sop_classes == ("1.2.840.10008.5.1.4.1.1.77.1.6",)
    assert s.catalog.url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"IHGAMP__DICOM__PORT": "70000"},
            "dicom.port: Input should be less than or equal to 65535",
        ),
        ({"IHGAMP__DICOM__AE_TITLE": "A" * 17}, "dicom.ae_title: an AE title is 1-16"),
        ({"IHGAMP__DICOM__SOP_CLASSES": '["not-a-uid"]'}, "dicom.sop_classes: 'not-a-uid'"),
        ({"IHGAMP__WORKER__COUNT": "many"}, "worker.count: Input should be a valid integer"),
        ({"IHGAMP__CATALOG__URL": "mysql://x"}, "catalog.url: use sqlite:///PATH"),
        ({"IHGAMP__COMPLETION__FORCE_AFTER_S": "1"}, "force_after_s must be at least"),
        ({"IHGAMP__DICOM__TLS__ENABLED": "true"}, "dicom.tls: certificate must name an existing"),
        ({"IHGAMP__MODEL__HEAD": "/nowhere/head"}, "model.head: /nowhere/head does not exist"),
        ({"IHGAMP__DICOM__BOGUS": "1"}, "dicom.bogus: Extra inputs are not permitted"),
        (
            {"IHGAMP__MODEL__DEVICE": "cuda", "IHGAMP__MODEL__PRECISION": "int8"},
            "model: precision int8 runs on the CPU only",
        ),
        ({"IHGAMP__MODEL__PRECISION": "fp8"}, "model.precision: Input should be"),
        (
            {"IHGAMP__ANALYSES__ENABLED": '["hrd", "ki67"]'},
            "analyses: enabled: unknown analysis 'ki67' (known: hrd, her2",
        ),
        (
            {"IHGAMP__ANALYSES__PLUGINS": '["site_models.nowhere"]'},
            "analyses: analysis plug-in 'site_models.nowhere' cannot be imported",
        ),
        (
            {"IHGAMP__ANALYSES__PLUGINS": "5"},
            "analyses: plugins: a list of importable module names",
        ),
        (
            {"IHGAMP__ANALYSES__HER2_MAX_TILES": "7", "IHGAMP__ANALYSES__HER2__MAX_TILES": "5"},
            "analyses: give one of her2_max_tiles and [analyses.her2] max_tiles, not both",
        ),
        (
            {"IHGAMP__ANALYSES__HER2__MAX_TILES": "0"},
            "analyses: her2.max_tiles: Input should be greater than or equal to 1",
        ),
        (
            {"IHGAMP__ANALYSES__HER2__COLOUR": "red"},
            "analyses: her2.colour: Extra inputs are not permitted",
        ),
        ({"IHGAMP__ANALYSES__ENABLED": "[]"}, "analyses.enabled: Tuple should have at least 1"),
        (
            {"IHGAMP__ANALYSES__BLOCK_PATTERN": "S\\d+"},
            "analyses: the block pattern needs a group named 'block'",
        ),
        (
            {"IHGAMP__ANALYSES__HER2_MODEL": "/nowhere/her2.safetensors"},
            "analyses: her2.model: Value error, /nowhere/her2.safetensors does not exist",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, env: dict[str, str], message: str) -> None:
    path = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ=env)
    assert message in str(info.value)


def test_stain_rules_are_checked_by_the_engine_at_start_up(tmp_path: Path) -> None:
    rules = [{"pattern": "(", "stain": "he"}]
    path = write_toml(
        tmp_path / "gw.toml", settings_dict(tmp_path, analyses={"stain_rules": rules})
    )
    with pytest.raises(ConfigError, match=r"analyses: bad stain rule pattern '\('"):
        load_settings(path, environ={})
    rules = [{"pattern": "ki-?67", "stain": "ihc-other", "fields": ["series_description"]}]
    path = write_toml(
        tmp_path / "ok.toml", settings_dict(tmp_path, analyses={"stain_rules": rules})
    )
    (rule,) = load_settings(path, environ={}).analyses.metadata_rules().stain_rules
    assert rule.matches({"series_description": "Ki67 (MIB-1)"}) and rule.stain == "ihc-other"


def test_nobody_may_call_without_an_allow_list(tmp_path: Path) -> None:
    path = write_toml(tmp_path / "gw.toml", {"storage": {"min_free_mb": 1}})
    with pytest.raises(ConfigError, match="no calling AE may associate"):
        load_settings(path, environ={})


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[dicom\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad, environ={})


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "PORT",
                "AE_TITLE",
                "MAX_PDU",
                "ACCEPT_ANY_AE",
                "MAX_ASSOCIATIONS",
                "SOP_CLASSES",
                "BIND_HOST",
            ]
        ),
        st.text(max_size=30),
        max_size=4,
    )
)
def test_fuzzed_environment_gives_config_errors_only(values: dict[str, str]) -> None:
    env = {"IHGAMP__DICOM__" + k: v for k, v in values.items()}
    env.setdefault("IHGAMP__DICOM__ACCEPT_ANY_AE", "true")
    with contextlib.suppress(ConfigError):
        load_settings(None, environ=env, base_dir=Path("/tmp"))


def test_catalog_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("p@ss:w/rd%\n")
    data = settings_dict(tmp_path)
    data["catalog"] = {
        "url": "postgresql+psycopg://ihgamp@postgres:5432/ihgamp",
        "password_file": "db_password",
    }
    s = load_settings(write_toml(tmp_path / "gw.toml", data), environ={})
    assert s.catalog.password_file == secret.resolve()
    assert s.catalog.connect_url() == (
        "postgresql+psycopg://ihgamp:p%40ss%3Aw%2Frd%25@postgres:5432/ihgamp"
    )
    assert "p@ss" not in s.model_dump_json()  # `ihgamp config check` never shows it


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        (
            {"url": "postgresql+psycopg://ihgamp@db/ihgamp", "password_file": "missing"},
            "catalog: password_file .*missing does not exist",
        ),
        (
            {"url": "sqlite:///cat.db", "password_file": "gw.toml"},
            "password_file applies to a postgresql:// url only",
        ),
    ],
)
def test_catalog_password_file_errors(
    tmp_path: Path, catalog: dict[str, str], message: str
) -> None:
    data = settings_dict(tmp_path)
    data["catalog"] = catalog
    with pytest.raises(ConfigError, match=message):
        load_settings(write_toml(tmp_path / "gw.toml", data), environ={})


def test_broker_password_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "broker_password").write_text("s3cr:t/@%\n")
    data = settings_dict(tmp_path)
    data["worker"] = {
        "backend": "celery",
        "broker_url": "amqp://ihgamp:old@rabbitmq:5672//",
        "broker_password_file": "broker_password",
    }
    s = load_settings(write_toml(tmp_path / "gw.toml", data), environ={})
    assert s.worker.broker_connect_url() == "amqp://ihgamp:s3cr%3At%2F%40%25@rabbitmq:5672//"
    assert "s3cr" not in s.model_dump_json()
    assert s.worker.broker_redacted() == "amqp://ihgamp:***@rabbitmq:5672//"
    data["worker"]["broker_password_file"] = "missing"
    with pytest.raises(ConfigError, match="worker: broker_password_file .*missing does not exist"):
        load_settings(write_toml(tmp_path / "gw.toml", data), environ={})


def test_named_tokens_from_toml(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "ehr.token").write_text("ehr-token-from-file-0123\n")
    data = settings_dict(
        tmp_path,
        http={
            "token": "legacy-token-0123456789",
            "tokens": [
                {"name": "ehr", "token_file": "ehr.token", "expires": "2027-02-01"},
                {"name": "ops", "token": "ops-token-0123456789", "access": "operate"},
            ],
        },
    )
    path = write_toml(tmp_path / "conf" / "gw.toml", data)
    # TOML dates and times arrive as such when written without quotes.
    text = path.read_text().replace('expires = "2027-02-01"', "expires = 2027-02-01")
    path.write_text(text)
    tokens = load_settings(path, environ={}).http.api_tokens()
    assert [(t.name, str(t.access)) for t in tokens] == [
        ("default", "operate"),
        ("ehr", "read"),
        ("ops", "operate"),
    ]
    ehr = tokens[1]
    assert ehr.secret() == "ehr-token-from-file-0123"
    assert (
        ehr.expires_at() is not None and ehr.expires_at().isoformat() == "2027-02-01T00:00:00+00:00"
    )  # type: ignore[union-attr]
    # Secrets never appear in the effective configuration that `config check` prints.
    dumped = load_settings(path, environ={}).model_dump_json()
    assert "ops-token" not in dumped and "legacy-token" not in dumped


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "token": "x" * 20, "expires": "2027-01-01T00:00:00"}, "UTC offset"),
        ({"name": "a"}, "exactly one of token and token_file"),
        ({"name": "a", "token": "short"}, "at least 16"),
        ({"name": "a", "token_file": "missing.token"}, "does not exist"),
        ({"name": "a b", "token": "x" * 20}, "http.tokens.0.name"),
        ({"name": "a", "token": "x" * 20, "access": "admin"}, "'read' or 'operate'"),
    ],
)
def test_bad_tokens_are_refused_naming_the_key(
    tmp_path: Path, entry: dict[str, str], message: str
) -> None:
    path = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path, http={"tokens": [entry]}))
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_duplicate_token_names_are_refused(tmp_path: Path) -> None:
    tokens = [{"name": "a", "token": "x" * 20}, {"name": "a", "token": "y" * 20}]
    path = write_toml(tmp_path / "gw.toml", settings_dict(tmp_path, http={"tokens": tokens}))
    with pytest.raises(ConfigError, match="token names must be unique"):
        load_settings(path, environ={})
