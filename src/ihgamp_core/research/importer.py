"""Importing a head trained with the public IHGAMP notebooks into our pickle-free artifact.

The notebooks save a joblib dict holding a scikit-learn ``Pipeline`` (StandardScaler,
PCA(384), Ridge) and a ``LogisticRegression`` (Platt scaling). Loading a joblib file
runs pickle, which can execute code; so this happens only in the explicit offline
command ``ihgamp hrd import-head``, after a warning, through an unpickler that refuses every
class outside a short allow-list of the expected scikit-learn and NumPy classes. The
gateway itself never unpickles anything.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..embed.backbone import BackboneIdentity
from ..errors import ArtifactError
from ..head import HeadArtifact, HeadMetadata
from ..params import get_preset

__all__ = ["ALLOWED_CLASSES", "import_notebook_head", "safe_load_joblib"]

logger = logging.getLogger(__name__)

ALLOWED_CLASSES = frozenset(
    {
        ("sklearn.pipeline", "Pipeline"),
        ("sklearn.preprocessing._data", "StandardScaler"),
        ("sklearn.decomposition._pca", "PCA"),
        ("sklearn.linear_model._ridge", "Ridge"),
        ("sklearn.linear_model._logistic", "LogisticRegression"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }
)


def safe_load_joblib(path: Path) -> Any:
    """Load a joblib file, refusing any class outside :data:`ALLOWED_CLASSES`.

    Raises
    ------
    ArtifactError
        If the file references another class (the message names it) or is not joblib.
    """
    from joblib.numpy_pickle import NumpyUnpickler, _validate_fileobject_and_memmap

    class AllowListUnpickler(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in ALLOWED_CLASSES:
                raise ArtifactError(
                    f"{path}: refusing to load {module}.{name}; only the scikit-learn and "
                    "NumPy classes of an IHGAMP head are allowed"
                )
            return super().find_class(module, name)

    path = Path(path)
    try:
        with (
            path.open("rb") as raw,
            _validate_fileobject_and_memmap(raw, str(path), None) as (
                fobj,
                _,
            ),
        ):
            return AllowListUnpickler(str(path), fobj, True).load()
    except ArtifactError:
        raise
    except Exception as exc:  # corrupt or not a joblib pickle
        raise ArtifactError(f"{path}: not a readable joblib file ({type(exc).__name__})") from exc


def _find(obj: Any, kind: str) -> Any:
    """The first object of class ``kind`` in a dict/list/Pipeline tree."""
    if type(obj).__name__ == kind:
        return obj
    if type(obj).__name__ == "Pipeline":
        for _, step in obj.steps:
            found = _find(step, kind)
            if found is not None:
                return found
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        for item in obj:
            found = _find(item, kind)
            if found is not None:
                return found
    return None


def import_notebook_head(
    path: Path,
    backbone: BackboneIdentity,
    name: str = "IHGAMP HRD (imported)",
    version: str = "imported-1",
    threshold: float | None = None,
) -> HeadArtifact:
    """Convert a notebook joblib head into a :class:`HeadArtifact`.

    Parameters
    ----------
    path : Path
        The ``frozen_model.joblib`` file.
    backbone : BackboneIdentity
        The backbone whose embeddings it was trained on (its checkpoint's SHA-256).
    name, version : str
        Identity of the imported head.
    threshold : float, optional
        Operating threshold; else the file's ``threshold`` entry; else 0.5.

    Raises
    ------
    ArtifactError
        Unexpected classes, missing parts, or a whitening PCA (not linear-equivalent).
    """
    logger.warning(
        "unpickling a joblib head with an allow-list of classes", extra={"path": str(path)}
    )
    content = safe_load_joblib(path)
    pca, ridge = _find(content, "PCA"), _find(content, "Ridge")
    scaler, platt = _find(content, "StandardScaler"), _find(content, "LogisticRegression")
    if pca is None or ridge is None or platt is None:
        raise ArtifactError(f"{path}: expected PCA, Ridge and LogisticRegression objects")
    if getattr(pca, "whiten", False):
        raise ArtifactError(f"{path}: a whitening PCA is not supported")
    if threshold is None and isinstance(content, dict):
        for key in ("threshold", "optimal_threshold", "youden_threshold"):
            if key in content:
                threshold = float(content[key])
                break
    preset = get_preset("ihgamp-code" if scaler is not None else "paper")
    components = np.asarray(pca.components_, dtype=np.float64)
    if components.shape[1] != backbone.embedding_dim:
        raise ArtifactError(
            f"{path}: the head expects {components.shape[1]}-d embeddings, the "
            f"backbone gives {backbone.embedding_dim}"
        )
    from dataclasses import replace

    preset = replace(
        preset,
        head=replace(
            preset.head,
            pca_components=components.shape[0],
            ridge_alpha=float(getattr(ridge, "alpha", 30.0)),
        ),
    )
    metadata = HeadMetadata(
        name=name,
        version=version,
        endpoint="scarHRD>=33",
        backbone=backbone,
        preset=preset,
        operating_threshold=0.5 if threshold is None else threshold,
        threshold_method="imported" if threshold is not None else "default-0.5",
        embedding_norm_range=(0.0, 1e6),
        intended_use=(
            "Imported from the public IHGAMP notebooks. Screening/triage estimate "
            "of HRD from H&E morphology; not a companion diagnostic."
        ),
        training={"source": str(path), "platt": "ihgamp-code"},
    )
    return HeadArtifact(
        metadata=metadata,
        pca_mean=np.asarray(pca.mean_, dtype=np.float64),
        pca_components=components,
        ridge_coef=np.asarray(ridge.coef_, dtype=np.float64).ravel(),
        ridge_intercept=float(np.asarray(ridge.intercept_).ravel()[0]),
        platt_coef=float(np.asarray(platt.coef_).ravel()[0]),
        platt_intercept=float(np.asarray(platt.intercept_).ravel()[0]),
        scaler_mean=None if scaler is None else np.asarray(scaler.mean_, dtype=np.float64),
        scaler_scale=None if scaler is None else np.asarray(scaler.scale_, dtype=np.float64),
    )
