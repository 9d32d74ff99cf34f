"""``mlloss.from_native``: a framework's own loss, named as users write it, as the mlloss loss
that computes exactly what it computes.

Every spec lists its natives (:class:`mlloss.spec.Native`): the framework's function or class,
the arguments mlloss maps and how each becomes a spec parameter or a reduction. This module
finds a native by name, translates its arguments and wraps the result so that it returns what
the native returns (the same values in the same shape), always called as
``loss(predictions, targets)``. It imports no framework: the loss runs on whichever backend it
is given or infers.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mlloss import backends as _backends
from mlloss import registry
from mlloss.loss import Loss, get
from mlloss.spec import REQUIRED, LossSpec, Native

#: prefixes users write for the same module, and the one the specs use
_PREFIXES = (
    ("tensorflow.", "tf."),
    ("tf.keras.losses.", "keras.losses."),
    ("optax.losses.", "optax.losses."),
    ("optax.", "optax.losses."),
    ("F.", "torch.nn.functional."),
    ("nn.", "torch.nn."),
)
_KERAS_MEAN = ("sum_over_batch_size", "mean", "mean_with_sample_weight")


@dataclass(frozen=True)
class Translation:
    """What a native computes, in mlloss's terms: ``mlloss.get(loss, reduction=reduction,
    mean_over_classes=mean_over_classes, **params)`` on targets taken as ``targets``."""

    loss: str
    params: dict[str, Any]
    reduction: str
    mean_over_classes: bool
    targets: str

    def call(self, backend: str | None = None) -> str:
        """The ``mlloss.get`` call, as code."""
        spec = registry.spec(self.loss)
        args = [repr(self.loss)]
        if backend is not None:
            args.append(f"backend={backend!r}")
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        if self.mean_over_classes:
            args.append("mean_over_classes=True")
        for name, value in self.params.items():
            if not _same(value, spec.param(name).default):
                args.append(f"{name}={_show(value)}")
        return f"mlloss.get({', '.join(args)})"


def canonical(name: str) -> str:
    """A native's name with the prefix the specs use (``tensorflow.`` -> ``tf.``, ...)."""
    if not isinstance(name, str):
        raise TypeError(f"a native's name must be a string; got {name!r}")
    name = name.strip()
    for written, used in _PREFIXES:
        if name.startswith(written):
            return used + name[len(written) :]
    return name


def records() -> Iterator[tuple[LossSpec, Native]]:
    """Every native of every registered loss, with its spec."""
    for loss in registry.names():
        spec = registry.spec(loss)
        for native in spec.natives:
            yield spec, native


def names() -> list[str]:
    """Every native's name and other forms, sorted."""
    return sorted({n for _, r in records() for n in (r.name, *r.forms)})


def lookup(name: str) -> list[tuple[LossSpec, Native]]:
    """The records of the native called ``name`` (in any of its forms); one per spec it maps
    to. An unknown name is a ``ValueError`` listing the known ones."""
    wanted = canonical(name)
    found = [(s, r) for s, r in records() if wanted in (r.name, *r.forms)]
    if found:
        return found
    known = names()
    close = difflib.get_close_matches(wanted, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
    raise ValueError(f"unknown native loss {name!r}; {hint}known natives: {', '.join(known)}")


def translate(name: str, **kwargs: Any) -> list[tuple[Native, Translation | ValueError]]:
    """The native ``name`` called with ``kwargs``, in mlloss's terms: one translation per kind
    of target it takes (torch's ``cross_entropy`` takes probabilities and class indices).
    Unknown arguments, arguments at values mlloss does not map, and values its parameters
    refuse are ``TypeError``/``ValueError`` naming the native and the argument; where only
    one of two kinds of target refuses them, that kind's entry is the ``ValueError``."""
    found = lookup(name)
    native = found[0][1]
    label = native.name
    known = dict(native.args)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(
            f"{label}: unknown argument {unknown[0]!r}; the arguments mlloss maps: "
            f"{', '.join(known) or 'none'}"
        )
    full = {**known, **kwargs}
    missing = [k for k, v in full.items() if v is REQUIRED]
    if missing:
        raise TypeError(f"{label}: missing required argument {missing[0]!r}")
    chosen = [(s, r) for s, r in found if all(_same(full[k], v) for k, v in r.when.items())]
    if not chosen:
        mapped = "; ".join(
            ", ".join(f"{k}={v!r}" for k, v in r.when.items()) + f" (mlloss's {s.name})"
            for s, r in found
        )
        given = ", ".join(f"{k}={full[k]!r}" for k in found[0][1].when)
        raise ValueError(f"{label}: {given} has no mlloss loss; mapped: {mapped}")
    if len(chosen) == 1:
        spec, record = chosen[0]
        return [(record, _translate(spec, record, full))]
    # one native, several kinds of target: a kind whose translation fails is left out (torch
    # refuses ignore_index with probability targets), and refused when such targets come
    out: list[tuple[Native, Translation | ValueError]] = []
    for spec, record in chosen:
        try:
            out.append((record, _translate(spec, record, full)))
        except ValueError as error:
            out.append((record, error))
    errors = [t for _, t in out if isinstance(t, ValueError)]
    if len(errors) == len(out):
        raise errors[0]
    return out


def _translate(spec: LossSpec, native: Native, full: Mapping[str, Any]) -> Translation:
    label = native.name
    for key, value in native.require.items():
        if not _same(full[key], value):
            raise ValueError(
                f"{label}: argument {key!r} is mapped at {value!r} only; got {full[key]!r}"
            )
    if native.keras_backends and keras_backend() not in native.keras_backends:
        raise ValueError(
            f"{label}: mapped exactly under Keras's {', '.join(native.keras_backends)} "
            f"backend only; Keras's backend here is {keras_backend()!r} ({native.note})"
        )
    params = dict(native.fixed)
    params.update({param: full[arg] for arg, param in native.rename.items()})
    try:
        if native.convert is not None:
            params.update(native.convert(full))
        resolved = spec.resolve_params(params)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{label}: {error}") from None
    reduction, mean_over_classes = _reduction(spec, native, full)
    targets = native.targets or spec.target_kind
    return Translation(spec.name, resolved, reduction, mean_over_classes, targets)


def _reduction(spec: LossSpec, native: Native, full: Mapping[str, Any]) -> tuple[str, bool]:
    element = spec.per == "element"
    if native.reduce == "unreduced":
        return "none", False
    if native.reduce == "per_sample":
        return "none", element
    given = full["reduction"]
    if native.reduce == "keras":
        valid: tuple[Any, ...] = (*_KERAS_MEAN, "sum", "none", None)
        if given in valid:
            reduction = "mean" if given in _KERAS_MEAN else "sum" if given == "sum" else "none"
            return reduction, element
    else:
        valid = ("none", "sum", "mean")
        if given in valid:
            weighted = native.reduce == "index_reduction" and given == "mean"
            return "weighted_mean" if weighted else given, False
    raise ValueError(
        f"{native.name}: argument 'reduction' expects one of "
        f"{', '.join(map(repr, valid))}; got {given!r}"
    )


def native_kwargs(spec: LossSpec, native: Native, params: Mapping[str, Any]) -> dict | None:
    """The native's arguments that compute ``spec`` with ``params`` (its reduction argument
    left at its default), or None when no arguments of it do. Proved by translating them back:
    only arguments that give exactly ``params`` again are returned."""
    wanted = spec.resolve_params(params)
    kwargs = {arg: wanted[param] for arg, param in native.rename.items()}
    if native.invert is not None:
        extra = native.invert(wanted)
        if extra is None:
            return None
        kwargs.update(extra)
    kwargs.update(native.when)
    if any(v is REQUIRED and kwargs.get(k) is None for k, v in native.args.items()):
        return None
    try:
        back = _translate(spec, native, {**native.args, **kwargs})
    except (TypeError, ValueError):
        return None
    if not all(_same(back.params[k], v) for k, v in wanted.items()):
        return None
    return {k: v for k, v in kwargs.items() if not _same(v, native.args.get(k, REQUIRED))}


class NativeLoss:
    """A native's mlloss counterpart: what :func:`from_native` returns.

    Called as ``loss(predictions, targets)`` (mlloss's order, whatever the native's own) it
    returns what the native returns. ``translations`` says what it computes in mlloss's
    terms; ``losses`` are the :class:`mlloss.Loss` objects behind it (two for torch's
    ``cross_entropy``, one for probability and one for class-index targets).
    """

    def __init__(self, native: str, kwargs: Mapping[str, Any], backend: str | None) -> None:
        found = translate(native, **kwargs)
        self.native = found[0][0].name
        self.kwargs = dict(kwargs)
        self.backend = backend
        #: kinds of target this native refuses with these arguments, and why
        self.refused = {
            (r.targets or registry.spec(_spec_of(r)).target_kind): t
            for r, t in found
            if isinstance(t, ValueError)
        }
        found = [(r, t) for r, t in found if not isinstance(t, ValueError)]
        self.translations = tuple(t for _, t in found)
        self.losses = tuple(
            get(
                t.loss,
                backend=backend,
                reduction=t.reduction,
                mean_over_classes=t.mean_over_classes,
                **t.params,
            )
            for t in self.translations
        )

    def __repr__(self) -> str:
        args = ", ".join([repr(self.native), *(f"{k}={_show(v)}" for k, v in self.kwargs.items())])
        targets = " | ".join(t.call(self.backend) for t in self.translations)
        return f"mlloss.from_native({args}, backend={self.backend!r}) = {targets}"

    @property
    def spec(self) -> LossSpec:
        return self.losses[0].spec

    def __call__(self, predictions: Any, targets: Any) -> Any:
        loss, targets = self._route(predictions, targets)
        return loss(predictions, targets)

    def value_and_grad(self, predictions: Any, targets: Any) -> tuple[Any, Any]:
        """``(value, d value / d predictions)``, as :meth:`mlloss.Loss.value_and_grad`."""
        loss, targets = self._route(predictions, targets)
        return loss.value_and_grad(predictions, targets)

    def decode(self, predictions: Any, **options: Any) -> Any:
        """Labels by the loss's own rule (:meth:`mlloss.Loss.decode`)."""
        return self.losses[0].decode(predictions, **options)

    def _route(self, predictions: Any, targets: Any) -> tuple[Loss, Any]:
        """The loss for these targets (by their kind when there are two), and the targets as it
        takes them."""
        index = 0
        if len(self.losses) > 1 or self.refused:
            integer = _dtype_kind(targets, self.backend, predictions) in "iu"
            kind = "class_index" if integer else "multi_hot"
            if kind in self.refused:
                raise ValueError(
                    f"{self.refused[kind]} (for {kind.replace('_', '-')} targets; the other "
                    f"kind of target is mapped)"
                )
            index = [t.targets for t in self.translations].index(kind)
        if self.translations[index].targets == "padded_indices":
            targets = _padded_to_multi_hot(predictions, targets, self.backend)
        return self.losses[index], targets


def _spec_of(native: Native) -> str:
    return next(s.name for s, r in records() if r is native)


def from_native(name: str, backend: str | None = None, **kwargs: Any) -> NativeLoss:
    """The mlloss loss that computes exactly what the framework's own loss ``name`` computes
    with arguments ``kwargs``, on ``backend`` (None: inferred from the tensors at each call).

    ``name`` is written as users write it: a class or function (``torch.nn.BCEWithLogitsLoss``,
    ``torch.nn.functional.binary_cross_entropy_with_logits``), ``tf.`` or ``tensorflow.``,
    ``optax.`` or ``optax.losses.``, ``keras.losses.``. Tensor arguments (``pos_weight``,
    ``weight``) may be NumPy arrays or any framework's tensors. The result is called as
    ``loss(predictions, targets)`` even where the native takes the targets first (Keras,
    TensorFlow), and returns the native's values in the native's shape. Unknown natives and
    arguments, and arguments at values without an exact mapping, are refused with an error
    that lists what is known. See docs/porting.md.
    """
    if backend is not None:
        backend = _backends.canonical(backend)
    return NativeLoss(name, kwargs, backend)


# helpers --------------------------------------------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    if a is b:
        return True
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if any(v is None or v is REQUIRED for v in (a, b)):
            return False
        return bool(np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float)))
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _show(value: Any) -> str:
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # a NumPy array
        return repr(value.tolist())
    return repr(value)


def keras_backend() -> str:
    """The backend Keras runs on, as Keras decides it, without importing Keras."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "config"):
        return str(keras.config.backend())
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    import json
    from pathlib import Path

    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return str(json.loads((home / "keras.json").read_text())["backend"])
    except (OSError, ValueError, KeyError):
        return "tensorflow"


def _dtype_kind(targets: Any, backend: str | None, like: Any) -> str:
    """NumPy's kind letter of the targets' dtype (i, u, b, f ...), for any framework."""
    name = backend or _backends.infer(like, targets)
    ops = _backends.load(name)
    if ops.is_tensor(targets):
        dtype = ops.dtype_name(targets)
        return "i" if dtype.startswith(("int", "uint")) else "b" if dtype == "bool" else "f"
    import numpy as np

    return np.asarray(targets).dtype.kind


def _padded_to_multi_hot(predictions: Any, targets: Any, backend: str | None) -> Any:
    """torch's ``multilabel_margin_loss`` targets (class indices, the first -1 ending each
    row) as multi-hot targets in the predictions' dtype."""
    import numpy as np

    ops = _backends.load(backend or _backends.infer(predictions, targets))
    x = predictions if ops.is_tensor(predictions) else ops.asarray(predictions)
    y = targets if ops.is_tensor(targets) else ops.asarray(np.asarray(targets), like=x)
    if not ops.dtype_name(y).startswith(("int", "uint")) or ops.shape(y) != ops.shape(x):
        raise TypeError(
            f"multilabel_margin_loss: targets expect integer class indices padded with -1, of "
            f"the predictions' shape {ops.shape(x)}; got dtype {ops.dtype_name(y)} and shape "
            f"{ops.shape(y)}"
        )
    num_classes = ops.shape(x)[-1]
    position = ops.arange(num_classes, like=y)
    # slot k is read when no slot j <= k holds a -1
    at_or_before = ops.expand_dims(position, -1) <= position  # (j, k)
    valid = ~ops.any(ops.expand_dims(y < 0, -1) & at_or_before, axis=-2)
    matches = ops.expand_dims(y, -1) == position  # (..., slot, class)
    hot = ops.any(ops.expand_dims(valid, -1) & matches, axis=-2)
    return ops.cast(hot, ops.dtype_name(x))
