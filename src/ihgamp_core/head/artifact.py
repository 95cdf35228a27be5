"""The HRD head artifact: arrays in ``head.npz``, everything else in ``head.json``.

Layout of a head directory::

    head/
      head.json   metadata: format version, backbone identity, preset (tiling,
                  preprocessing, head parameters), operating threshold, embedding-norm
                  reference range, training cohort summary, metrics, intended use,
                  and the SHA-256 of head.npz
      head.npz    float64 arrays, loaded with ``allow_pickle=False``:
                  pca_mean (D,), pca_components (K, D), ridge_coef (K,),
                  ridge_intercept (1,), platt (2,) = [coef, intercept],
                  optionally scaler_mean (D,), scaler_scale (D,)

Nothing is ever unpickled. Loading checks the format version, the file digest, every
array's shape and finiteness, and the consistency of metadata and arrays; a failed
check raises :class:`~ihgamp_core.errors.ArtifactError` naming what is wrong.

The model is linear up to the Platt sigmoid: ``score = x . w + c`` with ``w`` and
``c`` folded from scaler, PCA and Ridge. That is why every tile gets a score too.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..embed.backbone import BackboneIdentity
from ..errors import ArtifactError, BackboneMismatchError, ParameterError
from ..params import Preset

__all__ = [
    "DEMO_LABEL",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "HeadArtifact",
    "HeadMetadata",
    "load_head",
    "save_head",
]

FORMAT_NAME = "ihgamp-head"
FORMAT_VERSION = 1
DEMO_LABEL = "DEMO - synthetic training data - not for clinical use"
_JSON_NAME = "head.json"
_NPZ_NAME = "head.npz"
_MAX_ARTIFACT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class HeadMetadata:
    """Everything about a head except its arrays.

    Parameters
    ----------
    name : str
        Human name, e.g. ``"IHGAMP HRD (OpenCLIP ViT-B/16)"``.
    version : str
        Version of this trained head.
    endpoint : str
        What is predicted, e.g. ``"scarHRD>=33"`` or ``"platinum-resistance"``.
    backbone : BackboneIdentity
        The backbone whose embeddings the head was trained on.
    preset : Preset
        Tiling, preprocessing and head parameters used in training.
    operating_threshold : float
        Probability at and above which the call is positive.
    threshold_method : str
        How the threshold was chosen (e.g. ``"youden-validation"``).
    embedding_norm_range : tuple of float
        Accepted range of the case-mean embedding's L2 norm; outside it the result
        carries a QC flag.
    intended_use : str
        Intended-use statement shown in every output.
    demo : bool
        True for the demo head (synthetic training data).
    training : dict
        Cohort summary (sizes, prevalence, splits, Platt mode, source).
    metrics : dict
        Evaluation metrics recorded at training time.
    created : str
        ISO timestamp.
    """

    name: str
    version: str
    endpoint: str
    backbone: BackboneIdentity
    preset: Preset
    operating_threshold: float
    threshold_method: str
    embedding_norm_range: tuple[float, float]
    intended_use: str
    demo: bool = False
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    created: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.operating_threshold <= 1.0:
            raise ArtifactError(
                f"operating_threshold {self.operating_threshold} is not a probability"
            )
        lo, hi = self.embedding_norm_range
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo < hi):
            raise ArtifactError(f"embedding_norm_range {self.embedding_norm_range} is invalid")
        if not self.name or not self.version or not self.endpoint:
            raise ArtifactError("name, version and endpoint must not be empty")

    @property
    def display_name(self) -> str:
        """Name and version, with the demo label for demo heads."""
        text = f"{self.name} {self.version}"
        return f"{text} [{DEMO_LABEL}]" if self.demo else text

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form (without format header or digest)."""
        return {
            "name": self.name,
            "version": self.version,
            "endpoint": self.endpoint,
            "backbone": self.backbone.to_dict(),
            "preset": self.preset.to_dict(),
            "operating_threshold": self.operating_threshold,
            "threshold_method": self.threshold_method,
            "embedding_norm_range": list(self.embedding_norm_range),
            "intended_use": self.intended_use,
            "demo": self.demo,
            "training": self.training,
            "metrics": self.metrics,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadMetadata:
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        ArtifactError
            If a field is missing or invalid.
        """
        try:
            lo, hi = data["embedding_norm_range"]
            return cls(
                name=str(data["name"]),
                version=str(data["version"]),
                endpoint=str(data["endpoint"]),
                backbone=BackboneIdentity.from_dict(data["backbone"]),
                preset=Preset.from_dict(data["preset"]),
                operating_threshold=float(data["operating_threshold"]),
                threshold_method=str(data["threshold_method"]),
                embedding_norm_range=(float(lo), float(hi)),
                intended_use=str(data["intended_use"]),
                demo=bool(data.get("demo", False)),
                training=dict(data.get("training", {})),
                metrics=dict(data.get("metrics", {})),
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError, ParameterError) as exc:
            raise ArtifactError(f"head metadata is invalid: {exc}") from exc


@dataclass(frozen=True, eq=False)
class HeadArtifact:
    """A trained PCA -> Ridge -> Platt head, valid on construction.

    Parameters
    ----------
    metadata : HeadMetadata
        Identity and parameters.
    pca_mean : numpy.ndarray
        ``(D,)`` PCA centring vector.
    pca_components : numpy.ndarray
        ``(K, D)`` principal axes.
    ridge_coef : numpy.ndarray
        ``(K,)`` Ridge coefficients on the PCA scores.
    ridge_intercept : float
        Ridge intercept.
    platt_coef, platt_intercept : float
        Platt scaling: ``P = sigmoid(platt_coef * score + platt_intercept)``.
    scaler_mean, scaler_scale : numpy.ndarray or None
        StandardScaler applied before PCA (``ihgamp-code`` preset only).

    Raises
    ------
    ArtifactError
        If shapes disagree, values are not finite, or metadata and arrays conflict.
    """

    metadata: HeadMetadata
    pca_mean: NDArray[np.float64]
    pca_components: NDArray[np.float64]
    ridge_coef: NDArray[np.float64]
    ridge_intercept: float
    platt_coef: float
    platt_intercept: float
    scaler_mean: NDArray[np.float64] | None = None
    scaler_scale: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        dim = self.metadata.backbone.embedding_dim
        comps = self.pca_components
        _check(comps.ndim == 2 and comps.shape[1] == dim, f"pca_components must be (K, {dim})")
        k = comps.shape[0]
        _check(1 <= k <= dim, "number of PCA components must be in 1..embedding_dim")
        _check(self.pca_mean.shape == (dim,), f"pca_mean must be ({dim},)")
        _check(self.ridge_coef.shape == (k,), f"ridge_coef must be ({k},)")
        standardize = self.metadata.preset.head.standardize
        has_scaler = self.scaler_mean is not None and self.scaler_scale is not None
        _check(
            has_scaler == standardize,
            "scaler arrays must be present exactly when the preset standardises",
        )
        arrays = [self.pca_mean, comps, self.ridge_coef]
        if self.scaler_mean is not None and self.scaler_scale is not None:
            _check(self.scaler_mean.shape == (dim,), f"scaler_mean must be ({dim},)")
            _check(self.scaler_scale.shape == (dim,), f"scaler_scale must be ({dim},)")
            _check(bool(np.all(self.scaler_scale > 0)), "scaler_scale must be positive")
            arrays += [self.scaler_mean, self.scaler_scale]
        scalars = [self.ridge_intercept, self.platt_coef, self.platt_intercept]
        _check(
            all(bool(np.all(np.isfinite(a))) for a in arrays)
            and all(math.isfinite(s) for s in scalars),
            "arrays contain NaN or infinite values",
        )
        _check(self.platt_coef != 0.0, "platt_coef must not be zero")

    @cached_property
    def linear(self) -> tuple[NDArray[np.float64], float]:
        """The head folded into one linear map ``score = x . w + c`` (float64)."""
        direction = self.pca_components.T @ self.ridge_coef  # (D,)
        mean = self.pca_mean
        if self.scaler_mean is not None and self.scaler_scale is not None:
            w = direction / self.scaler_scale
            c = self.ridge_intercept - float(
                (self.scaler_mean / self.scaler_scale + mean) @ direction
            )
        else:
            w = direction
            c = self.ridge_intercept - float(mean @ direction)
        return w, c

    def check_backbone(self, identity: BackboneIdentity) -> None:
        """Refuse embeddings from any backbone but the one the head was trained on.

        Raises
        ------
        BackboneMismatchError
            Naming both identities and what to pass instead.
        """
        expected = self.metadata.backbone
        if identity != expected:
            raise BackboneMismatchError(
                f"the head {self.metadata.display_name!r} was trained on embeddings from "
                f"{expected.describe()}, but the backbone is {identity.describe()}; pass the "
                "matching --backbone-checkpoint, or a head trained on this backbone"
            )

    def score(self, embeddings: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
        """Continuous score of each row (a case or a tile embedding)."""
        w, c = self.linear
        return np.asarray(embeddings, dtype=np.float64) @ w + c

    def probability(self, scores: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Platt-calibrated probability for continuous scores."""
        z = self.platt_coef * np.asarray(scores, dtype=np.float64) + self.platt_intercept
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))  # = sigmoid(z), overflow-free

    def arrays(self) -> dict[str, NDArray[np.float64]]:
        """Return the arrays as stored in ``head.npz``."""
        out = {
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
            "ridge_coef": self.ridge_coef,
            "ridge_intercept": np.array([self.ridge_intercept]),
            "platt": np.array([self.platt_coef, self.platt_intercept]),
        }
        if self.scaler_mean is not None and self.scaler_scale is not None:
            out["scaler_mean"] = self.scaler_mean
            out["scaler_scale"] = self.scaler_scale
        return {key: np.asarray(value, dtype=np.float64) for key, value in out.items()}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ArtifactError(f"head artifact is invalid: {message}")


def save_head(head: HeadArtifact, directory: Path) -> Path:
    """Write ``head`` to ``directory`` (created if needed); return the JSON path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **head.arrays())  # type: ignore[arg-type]
    payload = buffer.getvalue()
    npz_path = directory / _NPZ_NAME
    npz_path.write_bytes(payload)
    document = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "arrays": _NPZ_NAME,
        "arrays_sha256": hashlib.sha256(payload).hexdigest(),
        **head.metadata.to_dict(),
    }
    json_path = directory / _JSON_NAME
    json_path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    return json_path


def load_head(path: Path, expected_backbone: BackboneIdentity | None = None) -> HeadArtifact:
    """Load and validate a head artifact.

    Parameters
    ----------
    path : Path
        The head directory or its ``head.json``.
    expected_backbone : BackboneIdentity, optional
        When given, the head must have been trained on this backbone.

    Raises
    ------
    ArtifactError
        If the artifact is missing, malformed, tampered with or of another version.
    BackboneMismatchError
        If ``expected_backbone`` differs from the head's backbone.
    """
    path = Path(path)
    json_path = path / _JSON_NAME if path.is_dir() else path
    if not json_path.is_file():
        raise ArtifactError(f"no head artifact at {path} (expected a folder holding {_JSON_NAME})")
    try:
        document = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{json_path}: not valid JSON ({exc})") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise ArtifactError(f"{json_path}: not an {FORMAT_NAME} artifact")
    if document.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{json_path}: format version {document.get('format_version')!r} is not supported "
            f"(this engine reads version {FORMAT_VERSION})"
        )
    npz_name = document.get("arrays", _NPZ_NAME)
    if not isinstance(npz_name, str) or Path(npz_name).name != npz_name:
        raise ArtifactError(f"{json_path}: 'arrays' must be a file name next to the JSON")
    npz_path = json_path.parent / npz_name
    try:
        if npz_path.stat().st_size > _MAX_ARTIFACT_BYTES:
            raise ArtifactError(f"{npz_path}: larger than {_MAX_ARTIFACT_BYTES} bytes")
        payload = npz_path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{npz_path}: cannot read the head arrays ({exc})") from exc
    if hashlib.sha256(payload).hexdigest() != document.get("arrays_sha256"):
        raise ArtifactError(
            f"{npz_path}: SHA-256 does not match head.json; the artifact was modified or "
            "is incomplete; restore it from the training output"
        )
    metadata = HeadMetadata.from_dict(document)
    arrays = _read_arrays(payload, npz_path)
    try:
        platt = arrays["platt"]
        ridge_intercept = arrays["ridge_intercept"]
        if platt.shape != (2,) or ridge_intercept.shape != (1,):
            raise ArtifactError(f"{npz_path}: 'platt' must be (2,) and 'ridge_intercept' (1,)")
        head = HeadArtifact(
            metadata=metadata,
            pca_mean=arrays["pca_mean"],
            pca_components=arrays["pca_components"],
            ridge_coef=arrays["ridge_coef"],
            ridge_intercept=float(ridge_intercept[0]),
            platt_coef=float(platt[0]),
            platt_intercept=float(platt[1]),
            scaler_mean=arrays.get("scaler_mean"),
            scaler_scale=arrays.get("scaler_scale"),
        )
    except KeyError as exc:
        raise ArtifactError(f"{npz_path}: missing array {exc}") from exc
    if expected_backbone is not None:
        head.check_backbone(expected_backbone)
    return head


def _read_arrays(payload: bytes, origin: Path) -> dict[str, NDArray[np.float64]]:
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {}
            for key in npz.files:
                value = npz[key]
                if value.dtype.kind not in "fi":
                    raise ArtifactError(f"{origin}: array {key!r} is not numeric")
                arrays[key] = np.asarray(value, dtype=np.float64)
            return arrays
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{origin}: not a valid pickle-free .npz ({exc})") from exc
