"""The backends, loaded on first use, and backend inference from tensors' types.

Inference never imports a framework: a tensor can only be a torch tensor if ``torch`` is
already in ``sys.modules`` (the way einops and array-api-compat decide).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

from mlloss.ops import Ops

BACKENDS = ("numpy", "torch", "tensorflow", "jax")
ALIASES = {"tf": "tensorflow", "np": "numpy", "pytorch": "torch"}
# the framework module each backend needs, as it appears in sys.modules
FRAMEWORK_MODULE = {"numpy": "numpy", "torch": "torch", "tensorflow": "tensorflow", "jax": "jax"}

_loaded: dict[str, Ops] = {}


def canonical(name: str) -> str:
    """``"tf"`` -> ``"tensorflow"``; an unknown name is a ``ValueError`` listing the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string or None; got {name!r} ({type(name).__name__})")
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BACKENDS:
        valid = ", ".join(BACKENDS) + " (aliases: " + ", ".join(sorted(ALIASES)) + ")"
        raise ValueError(f"unknown backend {name!r}; valid backends: {valid}")
    return key


def installed(name: str) -> bool:
    """Whether the framework behind a backend can be imported (without importing it)."""
    return importlib.util.find_spec(FRAMEWORK_MODULE[canonical(name)]) is not None


def load(name: str) -> Ops:
    """The backend's :class:`~mlloss.ops.Ops`, importing its framework the first time."""
    key = canonical(name)
    ops = _loaded.get(key)
    if ops is None:
        if not installed(key):
            extra = "" if key == "numpy" else f" (pip install 'mlloss[{key}]')"
            raise ImportError(f"backend {key!r} needs {FRAMEWORK_MODULE[key]}{extra}")
        # the import system serialises concurrent first imports; setdefault keeps one winner
        module = importlib.import_module(f"mlloss.backends.{key}")
        ops = _loaded.setdefault(key, module.ops)
    return ops


def framework_of(x: Any) -> str | None:
    """The backend a tensor belongs to, or None for Python numbers and lists."""
    modules = sys.modules
    torch = modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    jax = modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        return "jax"
    tf = modules.get("tensorflow")
    if tf is not None and isinstance(x, (tf.Tensor, tf.Variable)):
        return "tensorflow"
    np = modules.get("numpy")
    if np is not None and isinstance(x, (np.ndarray, np.generic)):
        return "numpy"
    return None


def infer(*arrays: Any) -> str:
    """The one backend the given tensors belong to; ``TypeError`` naming both when they mix."""
    found: dict[str, str] = {}
    for a in arrays:
        kind = framework_of(a)
        if kind is not None:
            found.setdefault(kind, type(a).__module__ + "." + type(a).__qualname__)
    if len(found) > 1:
        (a, ta), (b, tb) = list(found.items())[:2]
        raise TypeError(
            f"tensors of two frameworks in one call: {a} ({ta}) and {b} ({tb}); "
            f"convert them to one framework, or pass backend= explicitly to convert "
            f"NumPy arrays and lists"
        )
    return next(iter(found), "numpy")
