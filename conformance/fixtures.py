"""The golden fixtures on disk: ``fixtures/<loss>.npz`` (read with ``allow_pickle=False``) and
``fixtures/<loss>.json`` (what each case is and how it was generated). Reading them needs NumPy
only; :mod:`mlloss.conformance.golden` (with mpmath) writes them.

Arrays are named ``<case>.<dtype>.<field>``: ``x`` and ``y`` the inputs rounded to the dtype
(held exactly in float64), then ``<output>_hi`` and ``<output>_lo`` for each golden output in
:data:`OUTPUTS`, the value being hi + lo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

#: the fixture format this mlloss writes and reads; a newer one is refused
FORMAT = 1
#: where ``mlloss golden`` writes (the source tree's package data)
FIXTURES = Path(__file__).with_name("fixtures")
OUTPUTS = ("none", "sum", "mean", "grad_sum", "grad_mean")


class FixtureError(ValueError):
    """A fixture that cannot be used: missing, corrupt, or of a format this mlloss predates."""


def round_to(array: np.ndarray, dtype: str) -> np.ndarray:
    """Values rounded to ``dtype`` and held exactly in float64 (integers unchanged); beyond the
    dtype's range, its infinity."""
    array = np.asarray(array)
    if array.dtype.kind != "f":
        return array
    if dtype == "bfloat16":
        import ml_dtypes

        target: Any = ml_dtypes.bfloat16
    else:
        target = np.dtype(dtype)
    with np.errstate(over="ignore"):
        return array.astype(target).astype(np.float64)


@dataclass
class Fixture:
    description: dict[str, Any]
    arrays: dict[str, np.ndarray]

    def cases(self) -> list[dict[str, Any]]:
        return self.description["cases"]

    def get(self, case_id: str, dtype: str, field: str) -> np.ndarray:
        return self.arrays[f"{case_id}.{dtype}.{field}"]


def _fixture_root() -> Any:
    """Where the fixtures are read from: the installed package's data."""
    return resources.files("mlloss.conformance").joinpath("fixtures")


def load(name: str) -> Fixture:
    """One loss's stored fixture; a missing, corrupt or newer one is a :class:`FixtureError`."""
    root = _fixture_root()
    json_file, npz_file = root.joinpath(f"{name}.json"), root.joinpath(f"{name}.npz")
    if not json_file.is_file() or not npz_file.is_file():
        raise FixtureError(
            f"no golden fixture for loss {name!r}: run `mlloss golden --loss {name}`"
        )
    try:
        description = json.loads(json_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise FixtureError(f"fixture {name}.json is not valid JSON: {error}") from error
    version = description.get("format") if isinstance(description, dict) else None
    if not isinstance(version, int):
        raise FixtureError(f"fixture {name}.json has no format number")
    if version > FORMAT:
        raise FixtureError(
            f"fixture {name}.json has format {version}, newer than this mlloss reads "
            f"({FORMAT}); upgrade mlloss"
        )
    try:
        with npz_file.open("rb") as handle, np.load(handle, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as error:  # zipfile, ValueError for pickled arrays, OSError
        raise FixtureError(f"fixture {name}.npz cannot be read: {error}") from error
    return Fixture(description, arrays)


def available(name: str) -> bool:
    """Whether a fixture is stored for the loss ``name``."""
    return _fixture_root().joinpath(f"{name}.json").is_file()
