"""The gateway configurations shipped in deploy/ are valid as they stand."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings

from .conftest import REPO

pytestmark = pytest.mark.unit


def test_the_image_default_configuration_is_valid() -> None:
    s = load_settings(REPO / "deploy/docker/gateway.toml", environ={})
    assert s.dicom.bind_host == "0.0.0.0"  # noqa: S104 - inside the container
    assert s.dicom.port == 11112 and s.http.port == 8080
    assert str(s.storage.spool_dir) == "/var/lib/ihgamp/spool"
    assert s.catalog.url == "sqlite:////var/lib/ihgamp/db/catalog.db"
    assert s.model.head is None  # the DEMO model, labelled as such in every output


@pytest.mark.parametrize(
    ("path", "secrets"),
    [
        ("deploy/compose/gateway.toml", "/run/secrets/"),
        ("deploy/k8s/base/gateway.toml", "/run/secrets/ihgamp/"),
    ],
)
def test_the_compose_and_kubernetes_configurations_are_valid(
    tmp_path: Path, path: str, secrets: str
) -> None:
    text = (REPO / path).read_text()
    assert secrets in text
    (tmp_path / "api_token").write_text("t" * 32)
    (tmp_path / "db_password").write_text("pw")
    (tmp_path / "tls_certificate").write_text("")
    (tmp_path / "tls.crt").write_text("")
    (tmp_path / "tls_key").write_text("")
    (tmp_path / "tls.key").write_text("")
    local = tmp_path / "gateway.toml"
    local.write_text(text.replace(secrets, f"{tmp_path}/"))
    s = load_settings(local, environ={})
    assert s.catalog.connect_url().startswith("postgresql+psycopg://ihgamp:pw@")
    (token,) = s.http.api_tokens()
    assert token.secret() == "t" * 32
    assert s.dicom.allowed_aes and not s.dicom.accept_any_ae
