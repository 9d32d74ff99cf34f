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
_third_party: dict[str, Ops] = {}


def register(ops: Ops, name: str | None = None) -> str:
    """Make a third-party backend available by name (``mlloss.get(..., backend=name)``, the
    conformance suite). ``ops`` implements :class:`~mlloss.ops.Ops`, usually by subclassing
    :class:`~mlloss.ops.OpsBase`. Its tensors are inferred with ``ops.is_tensor`` after the
    built-in frameworks'."""
    if not isinstance(ops, Ops):
        required = [m for m in dir(Ops) if not m.startswith("_")] + ["name"]
        missing = sorted(m for m in required if not hasattr(ops, m))
        raise TypeError(f"a backend must implement mlloss.ops.Ops; missing: {', '.join(missing)}")
    name = name or ops.name
    if name in BACKENDS or name in ALIASES:
        raise ValueError(f"backend name {name!r} is taken by a built-in backend")
    _third_party[name] = ops
    return name


def unregister(name: str) -> None:
    """Remove a third-party backend registered with :func:`register`."""
    if name not in _third_party:
        raise ValueError(f"{name!r} is not a registered third-party backend")
    del _third_party[name]


def names() -> tuple[str, ...]:
    """Every backend name: the four built-in ones, then registered third-party ones."""
    return BACKENDS + tuple(_third_party)


def canonical(name: str) -> str:
    """``"tf"`` -> ``"tensorflow"``; an unknown name is a ``ValueError`` listing the valid ones."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string or None; got {name!r} ({type(name).__name__})")
    if name in _third_party:
        return name
    key = ALIASES.get(name.lower(), name.lower())
    if key not in BACKENDS:
        valid = ", ".join(names()) + " (aliases: " + ", ".join(sorted(ALIASES)) + ")"
        raise ValueError(f"unknown backend {name!r}; valid backends: {valid}")
    return key


def installed(name: str) -> bool:
    """Whether the framework behind a backend can be imported (without importing it)."""
    key = canonical(name)
    if key in _third_party:
        return True
    return importlib.util.find_spec(FRAMEWORK_MODULE[key]) is not None


def load(name: str) -> Ops:
    """The backend's :class:`~mlloss.ops.Ops`, importing its framework the first time."""
    key = canonical(name)
    ops = _loaded.get(key) or _third_party.get(key)
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
    for name, ops in _third_party.items():
        if ops.is_tensor(x):
            return name
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
