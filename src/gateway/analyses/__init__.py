"""The analyses this gateway runs: the registry, the built-in entries, site plug-ins.

See :mod:`gateway.analyses.registry` for what an entry holds and
``docs/analyses.md`` ("Adding an analysis") for a walkthrough.
"""

from . import registry
from .registry import *  # noqa: F403  (the registry's public names)

__all__ = registry.__all__
