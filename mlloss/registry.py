"""The registry of loss specs: names, aliases, lookup with suggestions."""

from __future__ import annotations

import difflib
import threading

from mlloss.spec import LossSpec

_specs: dict[str, LossSpec] = {}
_aliases: dict[str, str] = {}
_lock = threading.Lock()


def register(spec: LossSpec) -> LossSpec:
    """Add a spec to the catalog. A name or alias already taken is refused (``ValueError``)."""
    if not isinstance(spec, LossSpec):
        raise TypeError(f"register expects a LossSpec; got {type(spec).__name__}")
    with _lock:
        taken = [n for n in (spec.name, *spec.aliases) if n in _specs or n in _aliases]
        if taken:
            raise ValueError(
                f"cannot register {spec.name!r}: the name {taken[0]!r} is already taken "
                f"(by {_aliases.get(taken[0], taken[0])!r})"
            )
        names = [p.name for p in spec.params]
        if len(set(names)) != len(names):
            raise ValueError(f"cannot register {spec.name!r}: a parameter name repeats")
        _specs[spec.name] = spec
        for alias in spec.aliases:
            _aliases[alias] = spec.name
    return spec


def unregister(name: str) -> LossSpec:
    """Remove a spec (and its aliases) from the catalog and return it."""
    with _lock:
        if name not in _specs:
            raise ValueError(f"unknown loss {name!r}; cannot unregister it")
        removed = _specs.pop(name)
        for alias in removed.aliases:
            _aliases.pop(alias, None)
    return removed


def names() -> tuple[str, ...]:
    """Every registered loss name, sorted (aliases not included)."""
    return tuple(sorted(_specs))


def spec(name: str) -> LossSpec:
    """The spec registered under ``name`` or one of its aliases.

    An unknown name is a ``ValueError`` that suggests the closest known names.
    """
    if not isinstance(name, str):
        raise TypeError(f"a loss name must be a string; got {name!r} ({type(name).__name__})")
    found = _specs.get(name) or _specs.get(_aliases.get(name, ""))
    if found is not None:
        return found
    known = sorted({*_specs, *_aliases})
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise ValueError(f"unknown loss {name!r}; {hint}known losses: {', '.join(names())}")
