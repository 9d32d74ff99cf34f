"""The declarative model of a loss: :class:`LossSpec` and its parameters.

A spec is data plus formulas written once against :class:`mlloss.ops.Ops`; nothing in a spec
names a framework. The public entry point :func:`mlloss.get` turns a spec into a callable loss
on one backend.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from mlloss.ops import Ops

Per = Literal["element", "sample", "batch"]
InputKind = Literal["logits", "probabilities"]
TargetKind = Literal["multi_hot", "class_index"]
ParamKind = Literal["float", "bool", "per_class", "int", "choice"]
DecodeRule = Literal["logit_threshold", "probability_threshold", "zero_threshold", "top1", "top_k"]


@dataclass(frozen=True)
class Param:
    """One parameter of a loss: its default, the values it accepts and what it means.

    ``low``/``high`` bound a number (``None``: unbounded); ``low_open``/``high_open`` make a
    bound exclusive. ``per_class`` parameters are 1-D arrays with one non-negative finite entry
    per class, or one such number for every class (or ``None``); an array's length is checked
    against the logits when the loss is called.
    """

    name: str
    default: Any
    kind: ParamKind
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] = ()
    optional: bool = False

    def allowed(self) -> str:
        """The accepted values, in words (used by errors and docs)."""
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "per_class":
            text = "a non-negative finite number, or a 1-D array of them with one per class"
        else:
            lo = "-inf" if self.low is None else repr(self.low)
            hi = "inf" if self.high is None else repr(self.high)
            left = "(" if self.low_open or self.low is None else "["
            right = ")" if self.high_open or self.high is None else "]"
            word = "an integer" if self.kind == "int" else "a real number"
            text = f"{word} in {left}{lo}, {hi}{right}"
        return text + (" or None" if self.optional else "")

    def check(self, loss: str, value: Any) -> Any:
        """Return ``value`` normalised (floats as float, per-class as float64 arrays) or raise."""

        def fail(exc: type[Exception] = ValueError) -> Exception:
            return exc(
                f"{loss}: parameter {self.name!r} expects {self.allowed()}; got {_describe(value)}"
            )

        if value is None:
            if self.optional:
                return None
            raise fail(TypeError)
        if self.kind == "bool":
            numpy = sys.modules.get("numpy")  # a NumPy bool exists only once NumPy is loaded
            if isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_)):
                return bool(value)
            raise fail(TypeError)
        if self.kind == "choice":
            if value in self.choices:
                return value
            raise fail()
        if self.kind == "per_class":
            import numpy as np

            array = _host_array(value)
            if array is None or array.ndim > 1 or not np.issubdtype(array.dtype, np.number):
                raise fail(TypeError)
            array = array.astype(np.float64)
            if not np.all(np.isfinite(array)) or np.any(array < 0):
                raise fail()
            array.setflags(write=False)
            return array
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise fail(TypeError)
        if self.kind == "int":
            if not isinstance(value, numbers.Integral):
                raise fail(TypeError)
            number: float = int(value)
        else:
            number = float(value)
            if math.isnan(number):
                raise fail()
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise fail()
        if self.high is not None and (
            number > self.high or (self.high_open and number == self.high)
        ):
            raise fail()
        return number


#: a native argument that has no default (the native requires it)
REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "<required>"})()

#: how a native reduces what it computes (see docs/porting.md):
#: ``reduction``: its ``reduction=`` argument ("none", "sum", "mean") means what mlloss's does;
#: ``index_reduction``: the same, but "mean" is torch's weighted mean for class indices (the
#: sum over the sum of the targets' class weights);
#: ``keras``: a Keras ``Loss`` class: the mean over the last axis of an element-wise loss, then
#: its ``reduction=`` ("sum_over_batch_size" and "mean": the mean; "sum"; None or "none");
#: ``per_sample``: a Keras loss function: the mean over the last axis, unreduced;
#: ``unreduced``: optax and ``tf.nn``: the loss's own unreduced values
NativeReduce = Literal["reduction", "index_reduction", "keras", "per_sample", "unreduced"]


@dataclass(frozen=True)
class Native:
    """A framework's own loss, and its exact translation into the spec that lists it.

    ``name`` is the dotted name as the framework documents it, ``forms`` the other names of
    the same thing (the class form of a torch function). ``args`` is every keyword argument
    mlloss maps, with the native's default (:data:`REQUIRED` when it has none). The
    translation is data where it can be: ``rename`` (native keyword -> spec parameter, the
    value unchanged), ``fixed`` (spec parameters the native always implies, such as torch's
    log floor), ``require`` (native arguments mlloss maps only at one value, such as
    ``axis=-1``), ``inert`` (accepted, no effect on the value, such as a name); ``convert`` is
    the rest, a function from the native's arguments (defaults filled in) to spec parameters,
    and ``invert`` its inverse (spec parameters -> native arguments, None where none exist).
    ``when`` selects among records of one native that map to different specs
    (``from_logits``). ``targets`` is how the native takes its targets; ``targets_first``
    whether its own call order puts them first (mlloss always takes predictions first).
    ``keras_backends``: the Keras backends under which the mapping is exact (empty: all).
    ``note`` says in one line every way the native differs from the plain loss.
    """

    name: str
    framework: str
    args: Mapping[str, Any]
    reduce: NativeReduce
    forms: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, Any] = field(default_factory=dict)
    require: Mapping[str, Any] = field(default_factory=dict)
    inert: tuple[str, ...] = ()
    convert: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    invert: Callable[[Mapping[str, Any]], dict[str, Any] | None] | None = None
    when: Mapping[str, Any] = field(default_factory=dict)
    targets: Literal["multi_hot", "class_index", "padded_indices"] | None = None
    targets_first: bool = False
    keras_backends: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Prepared:
    """Targets made ready for a formula: ``y`` with missing entries replaced by a safe value,
    ``mask`` true where a label is observed (element-level for multi-hot targets, sample-level
    for class indices) and ``counted`` true where an entry of the unreduced loss counts in a mean.
    """

    y: Any
    mask: Any
    counted: Any


ValueFn = Callable[["Ops", Any, Prepared, Mapping[str, Any]], Any]
GradFn = Callable[["Ops", Any, Prepared, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class LossSpec:
    """A loss, defined once.

    ``value(ops, x, t, p)`` is the numerically stable formula: ``x`` the logits (or
    probabilities) in the compute dtype, ``t`` the :class:`Prepared` targets, ``p`` the
    parameters (per-class parameters as tensors). It returns the unreduced loss (``"none"``):
    shape ``x.shape`` for element-wise losses, ``x.shape[:-1]`` for per-sample ones, with zeros
    where nothing is observed.

    ``definition(ops, x, t, p)`` is the textbook formula as the paper writes it, used only to
    prove that ``value`` equals it. ``grad(ops, x, t, p)`` (optional) is the closed-form
    derivative of each unreduced entry with respect to ``x``: element-wise ``d l_ij / d x_ij``,
    per-sample ``d l_i / d x_ij``; zero where nothing is observed.

    ``heads`` names extra differentiable inputs with one value per sample, passed as keywords
    (``loss(x, y, count=c)``) and seen by the formulas as ``p[name]``; ``grad`` then returns a
    tuple (d/dx, d/dhead, ...) of per-entry derivatives.

    ``subgradients`` says in words what the gradient is at each kink; ``kink_side(ops, x, t,
    p)`` says it as data for the golden reference: per input entry, +1 where the declared
    gradient is the right-hand derivative, -1 the left-hand one, 0 the mean of the two. It is
    consulted only where the two one-sided derivatives differ.
    """

    name: str
    summary: str
    formula: str
    per: Per
    input_kind: InputKind
    target_kind: TargetKind
    params: tuple[Param, ...]
    value: ValueFn
    definition: ValueFn
    grad: GradFn | None = None
    decode: DecodeRule = "logit_threshold"
    subgradients: Mapping[str, str] = field(default_factory=dict)
    kink_side: ValueFn | None = None
    heads: tuple[str, ...] = ()
    natives: tuple[Native, ...] = ()
    references: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    notes: str = ""

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults filled in and every value checked; unknown names refused."""
        known = {p.name for p in self.params}
        unknown = sorted(set(given) - known)
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            raise TypeError(
                f"{self.name}: unknown parameter {', '.join(map(repr, unknown))}; "
                f"valid parameters: {valid}"
            )
        return {p.name: p.check(self.name, given.get(p.name, p.default)) for p in self.params}


def _host_array(value: Any) -> np.ndarray | None:
    """A parameter given as a list, NumPy array or any framework's tensor, as a NumPy array."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "numpy"):  # torch, wherever it lives
        value = value.detach().to("cpu").numpy()
    elif hasattr(value, "numpy") and callable(value.numpy):  # TensorFlow eager
        value = value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError):
        return None


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)) or hasattr(value, "shape"):  # arrays have a shape
        shape = getattr(value, "shape", None)
        kind = type(value).__name__
        return f"{kind} of shape {tuple(shape)}" if shape is not None else f"{kind} {value!r}"
    return f"{value!r} ({type(value).__name__})"
