"""``ihgamp status`` shows sender-supplied text as text; ``redispatch`` applies the
current ``dispatch.max_attempts``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.catalog import Catalog
from gateway.catalog.deliveries import DeliveryStore
from gateway.catalog.schema import DeliveryState
from gateway.cli.app import app
from support.gateway import settings_dict, write_toml
from support.operations import dead_letter, failed_study

pytestmark = pytest.mark.integration

runner = CliRunner()
# Rich markup a scanner, a PACS or a peer's error message may carry.
NASTY = ["[/]", "[bold red]x[/bold red]", "[link=http://evil]y[/link]", "[", "\\[/]"]


def _config(tmp_path: Path, **sections: object) -> tuple[Path, Catalog]:
    data = settings_dict(tmp_path, **sections)
    return write_toml(tmp_path / "gateway.toml", data), Catalog(data["catalog"]["url"])


def test_status_shows_markup_in_sender_strings_as_text(tmp_path: Path) -> None:
    config, catalog = _config(tmp_path)
    for index, text in enumerate(NASTY):
        uid = f"1.2.826.0.1.{index + 1}"
        failed_study(catalog, uid, text, f"decoder said {text}")
        dead_letter(catalog, uid, "pacs", f"peer said {text}")
    catalog.close()
    result = runner.invoke(app, ["status", "--config", str(config)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    for text in NASTY:
        assert f" {text} " in result.output or f"│ {text}" in result.output, text
        assert f"decoder said {text}" in result.output
        assert f"peer said {text}" in result.output
    as_json = runner.invoke(app, ["status", "--config", str(config), "--json"])
    accessions = {s["accession_number"] for s in json.loads(as_json.output)["studies"]}
    assert accessions == set(NASTY)


def test_redispatch_applies_the_current_max_attempts(tmp_path: Path) -> None:
    config, catalog = _config(tmp_path, dispatch={"max_attempts": 5})
    failed_study(catalog, "1.2.826.0.9", "ACC", "error")
    delivery_id = dead_letter(catalog, "1.2.826.0.9", "pacs", "refused", max_attempts=2)
    result = runner.invoke(app, ["redispatch", "--config", str(config)])
    assert result.exit_code == 0 and "1 deliveries pending again" in result.output
    (view,) = [d for d in DeliveryStore(catalog).deliveries() if d.delivery_id == delivery_id]
    assert view.state == DeliveryState.PENDING and view.attempts == 0
    assert view.max_attempts == 5
    catalog.close()
