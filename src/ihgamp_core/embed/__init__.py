"""Tile embeddings: the backbone contract, OpenCLIP towers, preprocessing, batched extraction."""

from .backbone import Backbone, BackboneIdentity, file_sha256
from .extract import (
    SlideEmbeddings,
    decode_tile,
    embed_plan,
    read_encoded_planned_tile,
    read_planned_tile,
)
from .openclip import DEFAULT_MODEL, OpenClipBackbone, resolve_device
from .preprocess import Preprocessor, make_preprocessor

__all__ = [
    "DEFAULT_MODEL",
    "Backbone",
    "BackboneIdentity",
    "OpenClipBackbone",
    "Preprocessor",
    "SlideEmbeddings",
    "decode_tile",
    "embed_plan",
    "file_sha256",
    "make_preprocessor",
    "read_encoded_planned_tile",
    "read_planned_tile",
    "resolve_device",
]
