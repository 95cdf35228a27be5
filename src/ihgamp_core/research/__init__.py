"""The research toolkit: cohort embedding, training and evaluation (the paper's protocol).

``ihgamp hrd embed`` -> :func:`embed_cohort`; ``ihgamp hrd train`` -> :func:`train_head`;
``ihgamp hrd evaluate`` -> :func:`evaluate`; ``ihgamp hrd import-head`` ->
:func:`import_notebook_head`.
"""

from .cohort import Cohort, EmbedSummary, describe, embed_cohort, load_cohort, patient_split
from .evaluate import EvaluationOptions, evaluate, leave_one_cancer_type_out, write_report
from .importer import import_notebook_head, safe_load_joblib
from .manifest import CaseRow, Manifest, read_manifest
from .store import EmbeddingStore
from .synthetic import CancerTypeSpec, write_synthetic_cohort
from .train import TrainOptions, model_card, train_head

__all__ = [
    "CancerTypeSpec",
    "CaseRow",
    "Cohort",
    "EmbedSummary",
    "EmbeddingStore",
    "EvaluationOptions",
    "Manifest",
    "TrainOptions",
    "describe",
    "embed_cohort",
    "evaluate",
    "import_notebook_head",
    "leave_one_cancer_type_out",
    "load_cohort",
    "model_card",
    "patient_split",
    "read_manifest",
    "safe_load_joblib",
    "train_head",
    "write_report",
    "write_synthetic_cohort",
]
