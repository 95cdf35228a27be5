"""The backbone contract: tiles in, one feature vector per tile out.

A backbone is identified by its architecture and its exact weights (the SHA-256 of
the checkpoint file, or ``random-init-seed-N`` for a seeded random initialisation).
That identity travels with every embedding and every head artifact, so a head is
never applied to embeddings from another backbone.
"""

from __future__ import annotations

import abc
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["Backbone", "BackboneIdentity", "file_sha256"]


@dataclass(frozen=True)
class BackboneIdentity:
    """Which network, with which weights, produced an embedding.

    Parameters
    ----------
    architecture : str
        E.g. ``"open_clip/ViT-B-16"``.
    weights : str
        ``"sha256:<hex>"`` of the checkpoint file, or ``"random-init-seed-<N>"``.
    embedding_dim : int
        Length of one embedding.
    """

    architecture: str
    weights: str
    embedding_dim: int

    def __post_init__(self) -> None:
        if not self.architecture or not self.weights or self.embedding_dim <= 0:
            raise ValueError(f"incomplete backbone identity: {self}")

    def describe(self) -> str:
        """One line for people: ``open_clip/ViT-B-16 @ sha256:0123abcd...``."""
        weights = self.weights
        if weights.startswith("sha256:"):
            weights = weights[:19] + "..."
        return f"{self.architecture} @ {weights}"

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form."""
        return {
            "architecture": self.architecture,
            "weights": self.weights,
            "embedding_dim": self.embedding_dim,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BackboneIdentity:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            architecture=str(data["architecture"]),
            weights=str(data["weights"]),
            embedding_dim=int(data["embedding_dim"]),
        )


class Backbone(abc.ABC):
    """A tile encoder.

    Implementations take a batch of preprocessed tiles (``(N, 3, H, W)`` float32,
    normalised) and return ``(N, D)`` float32 embeddings. They are not thread-safe:
    one thread runs :meth:`infer`, others may prepare the next batch.
    """

    identity: BackboneIdentity
    device: str

    @abc.abstractmethod
    def infer(self, batch: Any) -> NDArray[np.float32]:
        """Embed one batch of preprocessed tiles.

        Parameters
        ----------
        batch : torch.Tensor
            ``(N, 3, H, W)`` float32 on the CPU.

        Returns
        -------
        numpy.ndarray
            ``(N, D)`` float32, unnormalised.
        """


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the SHA-256 of a file as lowercase hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
