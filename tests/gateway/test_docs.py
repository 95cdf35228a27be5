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
        if field.exclude:  # derived, not a key (analyses.options: the [analyses.<name>] tables)
            continue
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


def test_the_metrics_the_deployment_guide_names_exist(tmp_path: Path) -> None:
    """Alert rules on a misspelt metric never fire: every name in the guide is served."""
    import re

    from gateway import metrics
    from gateway.catalog import Catalog
    from gateway.spool import Spool

    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    try:
        metrics.observe(catalog, Spool(tmp_path / "spool"))
        metrics.JOBS.labels("failed", "hrd")  # labelled children appear once created
        metrics.SCORING_SECONDS.labels("hrd")
        metrics.JOB_QUEUE_SECONDS.labels("hrd")
        metrics.INSTANCES_REFUSED.labels("0xA900")
        metrics.ASSOCIATION_REFUSALS.labels("quota")
        metrics.STUDY_CONFLICTS.labels("patient")
        metrics.DISPATCH_ATTEMPTS.labels("pacs", "delivered")
        body, _ = metrics.render()
    finally:
        catalog.close()
    lines = body.decode().splitlines()
    served = {line.split("{")[0].split(" ")[0] for line in lines if not line.startswith("#")}
    # Labelled gauges of an empty catalog have no samples yet, but their family is declared.
    served |= {line.split(" ")[2] for line in lines if line.startswith("# TYPE ")}
    guide = (REPO / "docs" / "deployment.md").read_text()
    section = guide[guide.index("## Prometheus") : guide.index("## Measured here")]
    named = set(re.findall(r"\bihgamp_[a-z_]+[a-z]", section))
    histograms = {n for n in named if f"{n}_bucket" in served}
    assert named - histograms <= served, sorted(named - histograms - served)
    assert len(named) >= 15
