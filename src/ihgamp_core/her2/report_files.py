"""Writing a training/evaluation report: ``report.json`` and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import CLASS_LABELS

__all__ = ["markdown_report", "write_training_report"]


def _table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| path | accuracy | macro-F1 | HER2-low recall | recall 0 / 1+ / 2+ / 3+ |",
        "| --- | --- | --- | --- | --- |",
    ]
    for path, m in results.items():
        recall = " / ".join(f"{m['per_class'][c]['recall']:.2f}" for c in CLASS_LABELS)
        low = m["her2_low_recall"]
        lines.append(
            f"| {path} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
            f"{'-' if low is None else f'{low:.3f}'} | {recall} |"
        )
    return lines


def markdown_report(report: dict[str, Any], title: str) -> str:
    """The report as Markdown: data, metrics per path, confusion matrices."""
    lines = [f"# {title}", ""]
    data = report.get("data")
    if data:
        lines += [
            f"Training pairs: {data['train_pairs']} {data['train_counts']}; test pairs: "
            f"{data['test_pairs']} {data['test_counts']}; class weights "
            f"{data['class_weights']}.",
            "",
        ]
    for key, heading in (
        ("test", "Test split, model as saved"),
        ("test_without_cam", "Ablation: without channel attention (CAM)"),
        ("test_with_cam", "Ablation: with channel attention (CAM)"),
    ):
        if key in report:
            lines += [f"## {heading}", "", *_table(report[key]), ""]
    if "test" in report:
        lines += ["## Confusion matrices (rows = truth 0, 1+, 2+, 3+)", ""]
        for path, m in report["test"].items():
            lines.append(f"- {path}: {m['confusion']}")
        lines.append("")
    lines.append(
        "HER2-low recall: fraction of true 1+ and 2+ patches predicted as 1+ or 2+. Patch-level "
        "metrics; the model cannot assess ERBB2 amplification."
    )
    return "\n".join(lines) + "\n"


def write_training_report(report: dict[str, Any], folder: Path, title: str) -> list[Path]:
    """Write ``report.json`` and ``report.md`` into ``folder`` (created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path = folder / "report.md"
    md_path.write_text(markdown_report(report, title))
    return [json_path, md_path]
