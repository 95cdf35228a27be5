"""Documentation stays in step with the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import Settings, load_settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and name != "allowed_aes"
        ):
            keys.extend(_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_configuration_key_is_documented() -> None:
    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in _keys(Settings) if f"`{key}`" not in text]
    assert not missing, f"undocumented keys: {missing}"


def test_example_configuration_is_valid() -> None:
    settings = load_settings(REPO / "deploy" / "gateway.example.toml", environ={})
    assert settings.dicom.allowed_aes[0].host == "10.20.30.40"


def test_every_pacs_key_is_documented() -> None:
    from gateway.config import PacsNode

    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in PacsNode.model_fields if f"`{key}`" not in text]
    assert not missing, f"undocumented [[pacs]] keys: {missing}"


def test_every_token_key_is_documented() -> None:
    from gateway.config import ApiToken

    text = (REPO / "docs" / "configuration.md").read_text()
    missing = [key for key in ApiToken.model_fields if f"`{key}`" not in text]
    assert not missing, f"undocumented [[http.tokens]] keys: {missing}"
