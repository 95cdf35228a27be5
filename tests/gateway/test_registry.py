"""The analysis registry: the one place the gateway learns of an analysis.

Unit checks of the registry and the ``[analyses.<name>]`` tables, the worker's loading
through it, and a scan of the gateway's code for analysis names outside it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway import analyses
from gateway.analyses import AnalysisEntry, AnalysisLoadError, PluginError, register
from gateway.catalog.schema import LEGACY_ANALYSIS
from gateway.config import AnalysesSettings
from gateway.errors import PermanentJobError
from gateway.score.worker import AnalysisModels

pytestmark = pytest.mark.unit

GATEWAY = Path(__file__).resolve().parents[2] / "src" / "gateway"
#: An analysis' name in code (not a stain value such as ``ihc-her2``).
ANALYSIS_NAME = re.compile(r"(?<![a-z-])(hrd|her2)(?![a-z0-9])", re.IGNORECASE)


def test_the_built_in_analyses_are_registered_and_hrd_scores_with_the_engine() -> None:
    assert analyses.names()[:2] == ["hrd", "her2"]
    assert analyses.legacy_entry().name == LEGACY_ANALYSIS
    assert [e.name for e in analyses.entries() if e.uses_engine] == ["hrd"]
    assert analyses.entry("her2").legend is not None
    with pytest.raises(KeyError, match="unknown analysis 'ki67' \\(known: hrd, her2"):
        analyses.entry("ki67")


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries registered by a test stay in it (the process-wide registry is unchanged)."""
    from gateway.analyses import registry

    analyses.names()  # the built-ins, registered once
    monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def test_a_second_entry_of_a_name_is_refused() -> None:
    hrd = analyses.entry("hrd")
    assert register(hrd) is hrd  # the same entry again: idempotent
    with pytest.raises(PluginError, match="registered twice"):
        register(dataclasses.replace(hrd, title="another"))


def test_each_analysis_has_its_table_and_old_flat_keys_are_still_read(tmp_path: Path) -> None:
    model = tmp_path / "her2.safetensors"
    model.write_bytes(b"")
    old = AnalysesSettings.model_validate(
        {"enabled": ["hrd", "her2"], "her2_model": str(model), "her2_max_tiles": 24}
    )
    new = AnalysesSettings.model_validate(
        {"enabled": ["hrd", "her2"], "her2": {"model": str(model), "max_tiles": 24}}
    )
    assert old.settings_of("her2") == new.settings_of("her2")
    assert new.settings_of("her2").max_tiles == 24 and new.settings_of("hrd").device == "auto"
    dumped = new.model_dump(mode="json")
    assert dumped["her2"] == {"device": "auto", "model": str(model), "max_tiles": 24}
    assert "options" not in dumped and AnalysesSettings.model_validate(dumped) == new


def test_workers_load_registered_analyses_through_their_entry() -> None:
    models = AnalysisModels(AnalysesSettings(enabled=("hrd",)), "cpu")
    with pytest.raises(PermanentJobError, match="'ki67' is not run by these workers"):
        models.get("ki67")
    # HRD scores with the worker's engine; a worker without one says so.
    with pytest.raises(PermanentJobError, match="with the worker's \\[model\\] engine"):
        models.get("hrd")


def test_a_loader_that_fails_or_builds_another_analysis_fails_the_job_for_good() -> None:
    def broken(context: analyses.LoadContext) -> object:
        raise AnalysisLoadError("weights file is truncated")

    spec = dataclasses.replace(analyses.entry("hrd").spec, name="broken-one")
    register(AnalysisEntry(spec=spec, load=broken, title="broken"))  # type: ignore[arg-type]
    other = dataclasses.replace(spec, name="other-one")
    wrong = dataclasses.replace(spec, name="wrong-one")
    register(
        AnalysisEntry(
            spec=wrong,
            load=lambda context: SimpleNamespace(spec=other),  # type: ignore[arg-type,return-value]
            title="wrong",
        )
    )
    settings = AnalysesSettings(enabled=("broken-one", "wrong-one"))
    with pytest.raises(PermanentJobError, match="weights file is truncated"):
        AnalysisModels(settings, "cpu").get("broken-one")
    with pytest.raises(PermanentJobError, match="the 'wrong-one' loader built 'other-one'"):
        AnalysisModels(settings, "cpu").get("wrong-one")


def _named(path: Path) -> list[str]:
    """Analysis names in a module's code: identifiers and strings, docstrings aside."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = "" if id(node) in docstrings else node.value.replace("ihc-her2", "")
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute | ast.FunctionDef | ast.ClassDef):
            text = node.attr if isinstance(node, ast.Attribute) else node.name
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.ImportFrom):
            text = node.module or ""
        else:
            continue
        if ANALYSIS_NAME.search(text.replace("_", " ")):
            found.append(f"{getattr(node, 'lineno', '?')}: {text[:60]!r}")
    return found


def test_no_gateway_module_outside_the_registry_names_an_analysis() -> None:
    named = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        rel = path.relative_to(GATEWAY).as_posix()
        if rel.startswith(("analyses/", "catalog/migrations/")):
            continue
        found = _named(path)
        if found:
            named[rel] = found
    assert not named, f"ask the registry (gateway.analyses) instead: {named}"
