"""The gateway's analysis registry: one entry per analysis, the only place that names one.

An entry is what the gateway needs to run an analysis it does not otherwise know:

* its :class:`~ihgamp_core.analysis.AnalysisSpec` (name and applicability: what routing
  reads; plain data, no model code, so receivers import it without torch);
* its settings table ``[analyses.<name>]`` (a pydantic model; unknown keys are errors);
* how a worker loads it (:attr:`AnalysisEntry.load`, called on the analysis' first job);
* how people see its maps (:attr:`AnalysisEntry.legend`, the colour key of its PNGs).

Config, routing, the life cycle, the worker, the web pages, the API and the metrics ask
the registry; none of them names an analysis. The built-in entries are registered by
:mod:`gateway.analyses.builtin`; a site's own analysis is a Python module that calls
:func:`register` (named in ``[analyses] plugins``, or published under the
``ihgamp.analyses`` entry-point group of an installed package).
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ihgamp_core.analysis import Analysis, AnalysisSpec

if TYPE_CHECKING:  # the engine imports torch: only workers load it
    from ihgamp_core.hrd.engine import Engine, ScoringOptions

__all__ = [
    "ENTRY_POINT_GROUP",
    "LEGACY_ANALYSIS",
    "AnalysisEntry",
    "AnalysisLoadError",
    "AnalysisSettings",
    "LoadContext",
    "PluginError",
    "entries",
    "entry",
    "legacy_entry",
    "load_plugins",
    "names",
    "register",
]

#: Entry-point group under which an installed package publishes its analysis modules.
ENTRY_POINT_GROUP = "ihgamp.analyses"
#: The analysis of rows and jobs from before analyses existed (revision 0006 named them
#: so), and of the jobs of a gateway that routes nothing (every slide in one job).
LEGACY_ANALYSIS = "hrd"


class PluginError(ValueError):
    """An analysis plug-in that cannot be imported, or an entry that cannot be registered."""


class AnalysisLoadError(RuntimeError):
    """An analysis' model cannot be loaded (missing file, wrong format): permanent."""


class AnalysisSettings(BaseModel):
    """The settings table every analysis has, ``[analyses.<name>]``.

    An analysis with options of its own subclasses it (its fields are validated with the
    rest of the configuration; unknown keys are errors).

    Parameters
    ----------
    device : str
        Compute device of its model; ``auto`` follows ``model.device``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    device: str = "auto"


@dataclass(frozen=True)
class LoadContext:
    """What a worker hands an analysis' loader.

    Parameters
    ----------
    settings : AnalysisSettings
        The analysis' own ``[analyses.<name>]`` table (its entry's settings class).
    device : str
        The device to load onto: the table's ``device``, else the worker's ``model.device``.
    engine : Engine or None
        The worker's loaded backbone and head (``[model]``), for analyses that score
        with it; None where the worker has none.
    scoring : ScoringOptions or None
        The worker's scoring options (``[model]``: tile cap, batch size, readers).
    """

    settings: AnalysisSettings
    device: str
    engine: Engine | None = None
    scoring: ScoringOptions | None = None


@dataclass(frozen=True)
class AnalysisEntry:
    """One analysis as the gateway knows it.

    Parameters
    ----------
    spec : AnalysisSpec
        Name and applicability (routing).
    load : callable
        ``load(context) -> Analysis``: build the analysis on a worker, on its first job.
        Raise :class:`AnalysisLoadError` (or an ``IhgampError``) for a model that cannot
        be loaded; the job then fails for good with that message.
    title : str
        How people call it (status page, ``--help``).
    settings : type of AnalysisSettings
        Its settings table's model.
    legend : callable or None
        ``(label, "#rrggbb")`` pairs of its PNG maps' colour key (class maps); None for
        continuous maps or none.
    needs_scoring_level : bool
        Whether it needs a level at or finer than the engine's scoring spacing (20x): when
        every enabled analysis does, a study without such a level fails before routing.
    uses_engine : bool
        Whether its model is the worker's engine (``[model]``: backbone and head): the
        auto-pull re-scores its results when the engine's model changes.
    export : callable or None
        ``export(result) -> dict``: the result as a JSON document for people (``ihgamp
        score --out``); None: the outcome's fields.
    legacy_keys : mapping of str to str
        Old flat ``[analyses]`` keys still read into its table (``old -> field``).
    """

    spec: AnalysisSpec
    load: Callable[[LoadContext], Analysis[Any]]
    title: str
    settings: type[AnalysisSettings] = AnalysisSettings
    legend: Callable[[], list[tuple[str, str]]] | None = None
    needs_scoring_level: bool = False
    uses_engine: bool = False
    export: Callable[[Any], Mapping[str, Any]] | None = None
    legacy_keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The analysis' name (``[analyses] enabled``, job rows, output folders)."""
        return str(self.spec.name)


_lock = threading.Lock()
_entries: dict[str, AnalysisEntry] = {}
_plugins_loaded: set[str] = set()


def register(new: AnalysisEntry) -> AnalysisEntry:
    """Add an analysis to the registry (idempotent for the same entry).

    Raises
    ------
    PluginError
        If another entry has the name.
    """
    _builtins()  # the shipped analyses are registered (and listed) first
    with _lock:
        current = _entries.get(new.name)
        if current is not None and current != new:
            raise PluginError(f"analysis {new.name!r} is registered twice")
        _entries[new.name] = new
    return new


def _builtins() -> None:
    from . import builtin  # noqa: F401  (registers the shipped analyses)


def entries() -> list[AnalysisEntry]:
    """Every registered analysis, in registration order (built-ins first)."""
    _builtins()
    with _lock:
        return list(_entries.values())


def names() -> list[str]:
    """Names of every registered analysis."""
    return [e.name for e in entries()]


def entry(name: str) -> AnalysisEntry:
    """The entry of analysis ``name``.

    Raises
    ------
    KeyError
        With the known names, for an analysis nobody registered.
    """
    _builtins()
    with _lock:
        found = _entries.get(name)
    if found is None:
        known = ", ".join(names())
        raise KeyError(f"unknown analysis {name!r} (known: {known})")
    return found


def legacy_entry() -> AnalysisEntry:
    """The analysis of jobs queued without a routing decision (:data:`LEGACY_ANALYSIS`)."""
    return entry(LEGACY_ANALYSIS)


def load_plugins(modules: Sequence[str] = (), use_entry_points: bool = True) -> None:
    """Import plug-in modules (each registers its analyses when imported).

    Parameters
    ----------
    modules : sequence of str
        Importable module names (``[analyses] plugins``).
    use_entry_points : bool
        Also import the modules installed packages publish under ``ihgamp.analyses``.

    Raises
    ------
    PluginError
        For a module that cannot be imported (the message names it and why).
    """
    _builtins()
    wanted: list[tuple[str, Callable[[], object]]] = [
        (m, functools.partial(importlib.import_module, m)) for m in modules
    ]
    if use_entry_points:
        wanted += [(str(ep.value), ep.load) for ep in _entry_points()]
    for label, load in wanted:
        if label in _plugins_loaded:
            continue
        try:
            load()
        except PluginError:
            raise
        except Exception as exc:  # an operator's module: any import error is reported
            raise PluginError(
                f"analysis plug-in {label!r} cannot be imported: {type(exc).__name__}: {exc}"
            ) from None
        _plugins_loaded.add(label)


def _entry_points() -> Iterable[Any]:
    return entry_points(group=ENTRY_POINT_GROUP)
