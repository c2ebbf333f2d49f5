"""Profiles: named experiment grids stored as TOML files in ``tkdlib/profiles/``.

A profile file has a ``description``, an ``out_dir`` (where its runs live, relative to the
working directory), a ``precision`` (how its cells train: ``auto``, ``fp32`` or ``bf16``; see
`tkdlib.runtime.Runtime`; default ``auto``, so a profile whose records were trained in float32
says ``fp32`` to keep new cells comparable), optionally ``pages`` (the summary notebooks the book
renders for it, `SUMMARY_PAGES` when absent), a ``[config]`` table of `Config` fields shared by every cell, and one or
more ``[[grid]]`` tables of `Config` fields, each a list of values. Each grid is the product of
its lists; the profile's cells are the union of its grids (duplicates once), so a main
comparison and one-switch ablations live side by side. A profile whose pages include
``regimes`` names, in a ``[compare]`` table, the profile it is set beside there and a label for
each of the two (`Comparison`): e.g. the short schedule against the converged one, or one
dataset against another.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tkdlib.experiment import Config
from tkdlib.runtime import PRECISIONS, Runtime

PROFILE_DIR = Path(__file__).parent / "profiles"
_TOP_LEVEL_KEYS = {"description", "out_dir", "precision", "pages", "config", "grid", "compare"}
# The book's summary notebooks (notebooks/<name>.ipynb): what a profile renders by default, and
# the pages a profile may choose from.
SUMMARY_PAGES = ("results", "ablations", "efficiency", "masks", "runs")
STUDY_PAGES = ("saliency", "regimes")  # pages of a study, chosen by the profile that shows it
# Fields every comparison varies; any other field that differs from the profile's base makes a
# cell a *variant* (an ablation).
COMPARED_FIELDS = ("method", "sparsity", "seed")


def available_profiles() -> list[str]:
    return sorted(path.stem for path in PROFILE_DIR.glob("*.toml"))


@dataclass(frozen=True)
class Comparison:
    """The profile another is set beside on its ``regimes`` page, and the two labels the page
    uses: first the comparing profile's, then the compared one's (e.g. "short", "converged")."""

    profile: str
    labels: tuple[str, str]


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    out_dir: str
    base: dict[str, Any]
    grids: list[dict[str, list[Any]]]
    path: Path
    precision: str = "auto"
    pages: tuple[str, ...] = SUMMARY_PAGES
    comparison: Comparison | None = None

    def runtime(self, device: str = "auto", precision: str | None = None, compile: bool = False) -> Runtime:
        """How the profile's cells execute: its `precision` unless `precision` is given (resolved)."""
        return Runtime(device, precision or self.precision, compile).resolved()

    @property
    def reference(self) -> str:
        """What `load_profile` takes to load this profile again: its name if bundled, else its path."""
        return self.name if self.path.parent == PROFILE_DIR else str(self.path.resolve())

    def config(self, **overrides: Any) -> Config:
        """The profile's base config with `overrides` applied; None values leave a field as it is."""
        return Config.from_dict({**self.base, **{k: v for k, v in overrides.items() if v is not None}})

    def changes(self, config: Config) -> dict[str, Any]:
        """Fields of `config` that differ from the profile's base, other than method, sparsity and
        seed: empty for the main comparison, the ablation's switches otherwise."""
        base = dataclasses.asdict(self.config())
        return {k: v for k, v in dataclasses.asdict(config).items() if k not in COMPARED_FIELDS and v != base[k]}

    def configs(self) -> list[Config]:
        """Every cell of every grid, in file order, each config once."""
        found: dict[Config, None] = {}
        for grid in self.grids:
            for values in itertools.product(*grid.values()):
                found.setdefault(self.config(**dict(zip(grid, values))))
        return list(found)


def load_profile(name: str | Path) -> Profile:
    """Read and validate ``tkdlib/profiles/<name>.toml``, or a profile file given by its path."""
    path = Path(name) if str(name).endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ValueError(f"Unknown profile {str(name)!r}; choose one of {', '.join(available_profiles())} or give a .toml path.")
    with path.open("rb") as handle:
        raw = tomllib.load(handle)
    unknown = set(raw) - _TOP_LEVEL_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL_KEYS)}")
    grids = raw.get("grid", [{}])
    grids = grids if isinstance(grids, list) else [grids]
    for grid in grids:
        for key, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path}: grid.{key} must be a non-empty list, got {values!r}")
    precision = raw.get("precision", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"{path}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    pages = raw.get("pages", list(SUMMARY_PAGES))
    known = SUMMARY_PAGES + STUDY_PAGES
    if not isinstance(pages, list) or not pages or any(page not in known for page in pages):
        raise ValueError(f"{path}: pages must be a non-empty list of {', '.join(known)}; got {pages!r}")
    comparison = _comparison(path, raw.get("compare"), "regimes" in pages)
    profile = Profile(
        path.stem, raw.get("description", ""), raw.get("out_dir", f"runs/{path.stem}"), raw.get("config", {}), grids, path, precision,
        tuple(pages), comparison,
    )
    profile.configs()  # validates every cell before any work starts
    return profile


def _comparison(path: Path, raw: Any, wanted: bool) -> Comparison | None:
    """The validated ``[compare]`` table of the profile at `path`: required when its pages include
    ``regimes`` (`wanted`), refused otherwise."""
    if raw is None:
        if wanted:
            raise ValueError(f"{path}: the regimes page needs a [compare] table: profile = \"<name>\", labels = [\"<this>\", \"<that>\"]")
        return None
    if not wanted:
        raise ValueError(f"{path}: [compare] is used only by the regimes page; add \"regimes\" to pages or remove it")
    if not isinstance(raw, dict) or set(raw) != {"profile", "labels"}:
        raise ValueError(f"{path}: [compare] must hold exactly profile and labels, got {raw!r}")
    if raw["profile"] not in available_profiles() or raw["profile"] == path.stem:
        raise ValueError(f"{path}: compare.profile must name another bundled profile ({', '.join(available_profiles())}), got {raw['profile']!r}")
    labels = raw["labels"]
    if not isinstance(labels, list) or len(labels) != 2 or not all(isinstance(x, str) and x for x in labels) or labels[0] == labels[1]:
        raise ValueError(f"{path}: compare.labels must be two different names (this profile's, then the compared one's), got {labels!r}")
    return Comparison(raw["profile"], (labels[0], labels[1]))
