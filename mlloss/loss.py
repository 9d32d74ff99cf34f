"""``mlloss.get``: a spec made into a callable loss on a backend.

One pipeline for every backend: check shapes and dtypes, compute in float32 for half
precision (float64 stays float64), prepare the targets (missing labels masked), evaluate the
spec (through the fused backward where the spec has a closed-form gradient), reduce, and cast
back to the input's floating dtype.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Literal

from mlloss import backends as _backends
from mlloss import registry
from mlloss.ops import Ops
from mlloss.spec import LossSpec, Prepared

Reduction = Literal["none", "sum", "mean", "weighted_mean"]
REDUCTIONS: tuple[str, ...] = ("none", "sum", "mean", "weighted_mean")

# half precision is computed in float32: its exp/log lose too much, and every framework's own
# fused losses do the same
_COMPUTE_DTYPE = {
    "float16": "float32",
    "bfloat16": "float32",
    "float32": "float32",
    "float64": "float64",
}


def _plain_python(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Keep TensorFlow's autograph from rewriting ``fn`` inside ``tf.function``.

    mlloss has no control flow that depends on tensor values, so there is nothing to convert;
    converting would only walk into importlib and warn. The attribute is the one
    ``tf.autograph.experimental.do_not_convert`` sets, set here without importing TensorFlow.
    """
    fn.autograph_info__ = frozenset()  # type: ignore[attr-defined]
    return fn


class Loss:
    """A loss from the catalog, bound to its parameters, a reduction and (optionally) a backend.

    Call it as ``loss(logits, targets)``; ``loss.value_and_grad(logits, targets)`` returns the
    value and its gradient with respect to the first argument. With ``backend=None`` the
    backend is taken from the tensors' type at each call. A ``Loss`` cannot be changed after it
    is made (``mlloss.get`` shares one between equal calls).
    """

    # a Loss object called inside tf.function is called as it is (see _plain_python)
    autograph_info__ = frozenset()

    def __init__(
        self,
        spec: LossSpec,
        backend: str | None,
        reduction: str,
        params: Mapping[str, Any],
        fused: bool = True,
        mean_over_classes: bool = False,
        validate: bool = True,
    ) -> None:
        self.spec = spec
        self.validate = validate
        self.name = spec.name
        self.backend = backend
        self.reduction = reduction
        self.params = MappingProxyType(dict(params))
        self.fused = fused and spec.grad is not None
        self.mean_over_classes = mean_over_classes
        # writable copies: torch shares memory with NumPy and warns on the read-only originals
        self._per_class = {k: v.copy() for k, v in self.params.items() if _is_per_class(spec, k, v)}
        self._fused_fns: dict[str, tuple[Callable[..., Any], bool]] = {}
        self._kernels: dict[str, Callable[..., Any] | None] = {}
        if backend is not None:
            # asked for by name: load and build now, not inside a compiled trace (where
            # neither an import nor a class statement can run)
            ops = _backends.load(backend)
            if self.fused:
                self._fused_fn(ops)
        self._frozen = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise AttributeError(
                f"{self.name}: a Loss cannot be changed (mlloss.get returns one shared Loss "
                f"for equal arguments); call mlloss.get with the settings you want instead"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{k}={v!r}" for k, v in self.params.items() if v is not self.spec.param(k).default
        )
        if self.mean_over_classes:
            shown = "mean_over_classes=True" + (f", {shown}" if shown else "")
        extra = f", {shown}" if shown else ""
        return (
            f"mlloss.get({self.name!r}, backend={self.backend!r}, "
            f"reduction={self.reduction!r}{extra})"
        )

    # public API -------------------------------------------------------------------------------

    @_plain_python
    def __call__(self, logits: Any, targets: Any, **heads: Any) -> Any:
        """The loss, reduced as asked, as a tensor of the backend's type and the input's dtype.
        A loss with extra heads (``partition``: ``count=``) takes them as keywords."""
        # the targets' values are checked in _forward: a kernel that checks them itself saves
        # that pass
        ops, x, y, h, _ = self._inputs(logits, targets, heads, check=False)
        # targets that autodiff may differentiate take the formula's autodiff: the fused
        # backward is with respect to the logits and heads only
        fused = self.fused and not ops.differentiable(y)
        return self._forward(ops, x, y, h, fused=fused, in_range=None)

    @_plain_python
    def value_and_grad(self, logits: Any, targets: Any, **heads: Any) -> tuple[Any, Any]:
        """``(value, d value / d logits)``; for a loss with extra heads, ``(value, (d/d logits,
        d/d head, ...))`` in the spec's head order. With ``reduction="none"`` the gradient is
        that of the sum of the unreduced values (every entry's cotangent 1).

        A backend without autodiff (NumPy) uses the spec's closed-form gradient; torch,
        TensorFlow and JAX differentiate the loss as it runs (through the fused backward when
        there is one).
        """
        ops, x, y, h, in_range = self._inputs(logits, targets, heads)
        if ops.autodiff:
            return ops.value_and_grad(
                lambda v, *hv: self._forward(ops, v, y, hv, self.fused, in_range), x, *h
            )
        if self.spec.grad is None:
            raise NotImplementedError(
                f"{self.name}: no closed-form gradient, and backend {ops.name!r} has no "
                f"autodiff; use backend 'torch', 'tensorflow' or 'jax' for its gradient"
            )
        compute, xc, hc, t, p = self._prepare(ops, x, y, h)
        values = _nan_in_nan_out(ops, self.spec.per, xc, self.spec.value(ops, xc, t, p))
        samples, counted = self._over_classes(ops, values, t, compute)
        denominator = self._denominator(ops, counted, t, p, compute)
        reduced = _reduce(ops, samples, self.reduction, denominator)
        upstream = _reduce_vjp(ops, samples, counted, self.reduction, denominator)
        if self.mean_over_classes:  # each sample's mean spreads its cotangent over its classes
            upstream = ops.expand_dims(upstream, -1) / _observed_classes(ops, t, compute)
        grads = self._vjp(ops, upstream, xc, hc, t, p)
        if not self.spec.heads:
            return ops.cast(reduced, ops.dtype_name(x)), ops.cast(grads, ops.dtype_name(x))
        cast = tuple(ops.cast(g, ops.dtype_name(a)) for g, a in zip(grads, (x, *h), strict=True))
        return ops.cast(reduced, ops.dtype_name(x)), cast

    @_plain_python
    def sum_and_count(self, logits: Any, targets: Any, **heads: Any) -> tuple[Any, Any]:
        """``(sum, count)`` of this shard of a batch: the sum of the values a mean would
        average, and what the mean divides them by (the counted entries or samples; for
        ``"weighted_mean"`` the sum of the targets' class weights). Both add up across
        shards, so the mean of a batch split over replicas is
        ``all_reduce(sum) / all_reduce(count)``, which the per-replica means' mean is not
        (shards differ in their counts when labels are missing). See docs/data-parallel.md.

        A loss with a batch-level term (``per="batch"``: ``two_way``) has no such parts and
        raises ``ValueError``: its value couples every sample of the batch.
        """
        require_shardable(self, "sum_and_count")
        ops, x, y, h, _ = self._inputs(logits, targets, heads)
        fused = self.fused and not ops.differentiable(y)
        values, counted, t, p, compute = self._values(ops, x, y, h, fused)
        if self.reduction in ("mean", "weighted_mean"):
            count = self._denominator(ops, counted, t, p, compute)
        else:
            count = ops.sum(ops.cast(counted, compute))
        dtype = ops.dtype_name(x)
        return ops.cast(ops.sum(values), dtype), ops.cast(count, dtype)

    @_plain_python
    def decode(
        self, logits: Any, threshold: float | None = None, k: Any = None, **heads: Any
    ) -> Any:
        """Predicted labels, 0/1 (int32) in the logits' shape, by the loss's own rule.

        - sigmoid family (``logit_threshold``): ``sigmoid(x) > threshold`` (default 0.5),
          computed as ``x > log(threshold / (1 - threshold))``;
        - probabilities in (``probability_threshold``): ``p > threshold`` (default 0.5);
        - ``zlpr`` (``zero_threshold``): ``x > 0``, its built-in threshold (or ``x >
          threshold`` when one is given, as a logit);
        - ranking losses (``top_k``): the top ``k`` of each row, or ``x > threshold`` (a logit)
          when a threshold is given instead; one of the two is needed;
        - softmax losses (``top1``): the arg-max of each row, or the top ``k``.

        - ``partition`` (``top_count``): the top round(Z) of each row, Z = max(count, floor)
          from the ``count=`` head.

        ``k`` (any rule): the ``k`` largest of each row; an int, or a tensor with one k per row
        (shape (..., 1)). Ties go to the lower class index.
        """
        ops = _backends.load(self.backend or _backends.infer(logits))
        x = ops.asarray(logits) if not ops.is_tensor(logits) else logits
        rule = self.spec.decode
        if threshold is not None and k is not None:
            raise ValueError(f"{self.name}: decode takes threshold or k, not both")
        if k is not None:
            if isinstance(k, int) and not 0 <= k <= ops.shape(x)[-1]:
                raise ValueError(
                    f"{self.name}: k expects an integer in [0, {ops.shape(x)[-1]}] (the number "
                    f"of classes); got {k!r}"
                )
            return ops.cast(ops.top_k_mask(x, k), "int32")
        if rule == "top_count":
            if "count" not in heads:
                raise TypeError(f"{self.name}: decode needs the count= head (labels per sample)")
            count = (
                heads["count"]
                if ops.is_tensor(heads["count"])
                else ops.asarray(heads["count"], like=x)
            )
            z = ops.maximum(ops.cast(count, "float32"), self.params["count_floor"])
            return ops.cast(
                ops.top_k_mask(x, ops.expand_dims(ops.cast(z + 0.5, "int32"), -1)), "int32"
            )
        if rule == "top1":
            if threshold is not None:
                raise ValueError(f"{self.name}: decode rule 'top1' takes k, not a threshold")
            return ops.cast(ops.top_k_mask(x, 1), "int32")
        if rule in ("top_k", "zero_threshold"):
            if threshold is None and rule == "top_k":
                raise ValueError(
                    f"{self.name}: a ranking loss decodes by rank: pass k= (labels per "
                    f"sample) or threshold= (a logit)"
                )
            return ops.cast(x > (0.0 if threshold is None else threshold), "int32")
        cut = 0.5 if threshold is None else threshold
        if not 0.0 < cut < 1.0:
            raise ValueError(f"{self.name}: threshold expects a number in (0, 1); got {cut!r}")
        if rule == "logit_threshold":
            cut = math.log(cut / (1.0 - cut))
        return ops.cast(x > cut, "int32")

    # the pipeline -----------------------------------------------------------------------------

    def _inputs(
        self, logits: Any, targets: Any, heads: Mapping[str, Any], check: bool = True
    ) -> tuple[Ops, Any, Any, tuple[Any, ...], bool]:
        """The backend, the logits and targets as their tensors, the heads, and whether the
        targets' values were checked (with ``check``: see :meth:`_checked`) and every one is
        in range with none missing."""
        names = self.spec.heads
        unknown = sorted(set(heads) - set(names))
        missing = [n for n in names if n not in heads]
        if unknown or missing:
            expected = ", ".join(f"{n}=" for n in names) or "no extra inputs"
            what = f"unknown input {unknown[0]!r}" if unknown else f"missing input {missing[0]!r}"
            raise TypeError(f"{self.name}: {what}; it takes {expected}")
        values = [heads[n] for n in names]
        if self.backend is None:
            name = _backends.infer(logits, targets, *values)
        else:
            name = self.backend
            named = zip(names, values, strict=True)
            for role, value in (("logits", logits), ("targets", targets), *named):
                kind = _backends.framework_of(value)
                if kind not in (None, "numpy", name):
                    raise TypeError(
                        f"{self.name}: {role} is a {kind} tensor but the loss was created "
                        f"with backend={name!r}"
                    )
        ops = _backends.load(name)
        x = logits if ops.is_tensor(logits) else ops.asarray(logits)
        dtype = ops.dtype_name(x)
        if dtype not in _COMPUTE_DTYPE:
            raise TypeError(
                f"{self.name}: {self._first_arg} must be a floating-point tensor "
                f"(float16, bfloat16, float32 or float64); got dtype {dtype}"
            )
        y = targets if ops.is_tensor(targets) else ops.asarray(targets, like=x)
        self._check_shapes(ops, x, y)
        in_range = self._checked(ops, x, y) if check else False
        h = []
        for head, value in zip(names, values, strict=True):
            v = value if ops.is_tensor(value) else ops.asarray(value, dtype=dtype, like=x)
            if ops.dtype_name(v) not in _COMPUTE_DTYPE:
                raise TypeError(
                    f"{self.name}: {head} must be a floating-point tensor; got dtype "
                    f"{ops.dtype_name(v)}"
                )
            if ops.shape(v) != ops.shape(x)[:-1]:
                raise ValueError(
                    f"{self.name}: {head} expects shape {ops.shape(x)[:-1]} (one per sample of "
                    f"{self._first_arg} {ops.shape(x)}); got {ops.shape(v)}"
                )
            h.append(v)
        return ops, x, y, tuple(h), in_range

    @property
    def _first_arg(self) -> str:
        return "probabilities" if self.spec.input_kind == "probabilities" else "logits"

    def _check_shapes(self, ops: Ops, x: Any, y: Any) -> None:
        xs, ys = ops.shape(x), ops.shape(y)
        if len(xs) < 1:
            raise ValueError(
                f"{self.name}: {self._first_arg} expects shape (..., C) with at least one axis; "
                f"got a scalar"
            )
        if self.spec.target_kind == "class_index":
            if ys == xs and len(xs) > 1:
                raise ValueError(
                    f"{self.name}: targets expect class indices of shape {xs[:-1]}; got shape "
                    f"{ys}, the shape of multi-hot targets (for those use softmax_ce, or pass "
                    f"the indices)"
                )
            if ys != xs[:-1]:
                raise ValueError(
                    f"{self.name}: targets (class indices) expect shape {xs[:-1]} for "
                    f"{self._first_arg} of shape {xs}; got {ys}"
                )
            if not ops.dtype_name(y).startswith(("int", "uint")):
                raise TypeError(
                    f"{self.name}: targets expect integer class indices; got dtype "
                    f"{ops.dtype_name(y)}"
                )
        elif ys != xs:
            looks_like_indices = ys == xs[:-1] and ops.dtype_name(y).startswith(("int", "uint"))
            hint = (
                " (integer class indices: this loss takes multi-hot targets; one-hot them, or "
                "use sparse_softmax_ce)"
                if looks_like_indices
                else ""
            )
            raise ValueError(
                f"{self.name}: targets expect the shape of {self._first_arg} {xs}; got {ys}{hint}"
            )
        for p in self.spec.params:
            value = self.params[p.name]
            if (
                p.kind == "per_class"
                and value is not None
                and value.ndim == 1
                and value.shape[0] != xs[-1]
            ):
                raise ValueError(
                    f"{self.name}: parameter {p.name!r} expects {xs[-1]} entries (one per "
                    f"class of {self._first_arg} {xs}); got {value.shape[0]}"
                )

    def _checked(self, ops: Ops, x: Any, y: Any) -> bool:
        """:meth:`_check_targets` where the loss validates and the targets hold values (not
        inside a compile's trace), else False (not checked)."""
        if not (self.validate and ops.is_concrete(y)):
            return False
        with ops.reading():  # targets closed over by a jitted function hold values too
            return self._check_targets(ops, x, y)

    def _check_targets(self, ops: Ops, x: Any, y: Any) -> bool:
        """Targets in the loss's domain: multi-hot labels in [0, 1] or -1 (missing), class
        indices in [0, C) or the ignore index; NaN passes (NaN in, NaN out). The extremes and one
        read from the device when every target is in range (the full test runs only when one
        is not, as missing labels are); the offending entry is found only when there is one.

        True when that first test passed: every target in [0, 1] (or [0, C)), none missing."""
        import numpy as np  # loaded with every backend already; not at import mlloss

        if not ops.shape(y) or 0 in ops.shape(y) or ops.dtype_name(y) == "bool":  # 0 or 1
            return False
        classes = ops.shape(x)[-1]
        # the common case costs one pass for the extremes and one read: every target already
        # in [0, 1] (or [0, C))
        if ops.within(y, 0, classes - 1 if self.spec.target_kind == "class_index" else 1):
            return True
        if self.spec.target_kind == "class_index":
            ignore = self.params["ignore_index"]
            bad = ((y < 0) | (y >= classes)) & (y != ignore)
            expected = f"class indices in [0, {classes}) or ignore_index ({ignore})"
        else:
            bad = ((y < 0) & (y != -1)) | (y > 1)
            expected = "labels in [0, 1], or -1 for a missing label"
        if not bool(np.asarray(ops.to_numpy(ops.any(bad)))):
            return False
        flags = np.asarray(ops.to_numpy(bad))
        index = tuple(int(i) for i in np.argwhere(flags)[0])
        value = np.asarray(ops.to_numpy(y))[index]
        raise ValueError(
            f"{self.name}: targets expect {expected}; got {value.item()!r} at index {index} "
            f"({int(flags.sum())} such entries). Pass validate=False to skip this check."
        )

    def _prepare(
        self, ops: Ops, x: Any, y: Any, heads: tuple[Any, ...] = (), mask_logits: bool = True
    ) -> tuple[str, Any, tuple[Any, ...], Prepared, dict[str, Any]]:
        compute = _COMPUTE_DTYPE[ops.dtype_name(x)]
        xc = ops.cast(x, compute) if ops.dtype_name(x) != compute else x
        t = _prepare_targets(ops, self.spec, y, compute, self.params)
        # a logit whose label is missing never reaches the formula: whatever it is (NaN, inf),
        # it adds nothing to the value or, through this where, to any gradient path
        if mask_logits:
            xc = _mask_logits(ops, self.spec, xc, t.mask)
        # a head (one value per sample) of a sample with nothing observed, likewise
        hc = tuple(
            ops.where(t.counted, ops.cast(h, compute) if ops.dtype_name(h) != compute else h, 0.0)
            for h in heads
        )
        p = dict(self.params)
        for name, array in self._per_class.items():
            p[name] = ops.asarray(array, dtype=compute, like=xc)
        p.update(zip(self.spec.heads, hc, strict=True))
        return compute, xc, hc, t, p

    def _forward(
        self,
        ops: Ops,
        x: Any,
        y: Any,
        heads: tuple[Any, ...],
        fused: bool,
        in_range: bool | None = False,
    ) -> Any:
        """The reduced loss. ``in_range``: what :meth:`_checked` said, or None when the
        targets are still to be checked: here, unless a kernel that checks them itself
        (``checks_targets``: torch's, which take a call only when every target is in their
        domain, a part of the loss's) takes the call."""
        # torch's kernels run eagerly (a compiler fuses the formula), TensorFlow's XLA ones
        # inside tf.function too
        if fused and getattr(ops, "runs_kernels", ops.is_concrete)(x):
            kernel = self._kernel(ops)
            if kernel is not None:
                if in_range is None and not getattr(kernel, "checks_targets", False):
                    in_range = self._checked(ops, x, y)
                out = kernel(x, y, bool(in_range))
                if out is not None:
                    return out
        if in_range is None:  # raises for a target outside the loss's domain
            self._checked(ops, x, y)
        out, compute = self._reduced(ops, x, y, heads, fused)
        out_dtype = ops.dtype_name(x)
        return ops.cast(out, out_dtype) if out_dtype != compute else out

    def _reduced(
        self,
        ops: Ops,
        x: Any,
        y: Any,
        heads: tuple[Any, ...],
        fused: bool,
        kernels: bool = True,
    ) -> tuple[Any, str]:
        """The loss through the spec's path (no whole-loss kernel), reduced as asked, in the
        compute dtype; and that dtype. ``kernels``: see :meth:`_values`."""
        values, counted, t, p, compute = self._values(ops, x, y, heads, fused, kernels)
        denominator = self._denominator(ops, counted, t, p, compute)
        return _reduce(ops, values, self.reduction, denominator), compute

    def _values(
        self,
        ops: Ops,
        x: Any,
        y: Any,
        heads: tuple[Any, ...],
        fused: bool,
        kernels: bool = True,
    ) -> tuple[Any, Any, Prepared, dict[str, Any], str]:
        """The unreduced values (per sample with mean_over_classes), which of them count,
        the prepared targets and parameters, and the compute dtype. With ``fused`` and not
        ``kernels``, the spec's closed-form gradient without a backend's values kernel (a
        whole-loss kernel's general form: TensorFlow differentiates it inside a tf.cond
        branch, where the values kernels' own tf.cond has no gradient)."""
        # a backend's kernel applies the NaN policy and the mask of missing labels itself
        if not fused:
            fn, kernel = None, False
        elif kernels:
            fn, kernel = self._fused_fn(ops)
        else:
            fn, kernel = self._spec_fused_fn(ops), False
        compute, xc, hc, t, p = self._prepare(ops, x, y, heads, mask_logits=not kernel)
        if fn is not None:
            values = fn(xc, *hc, t.y, t.mask, *(p[k] for k in self._per_class))
        else:
            values = self.spec.value(ops, xc, t, p)
        if not kernel:
            values = _nan_in_nan_out(ops, self.spec.per, xc, values)
        values, counted = self._over_classes(ops, values, t, compute)
        return values, counted, t, p, compute

    def _over_classes(self, ops: Ops, values: Any, t: Prepared, compute: str) -> tuple[Any, Any]:
        """With ``mean_over_classes``: each sample's mean over its observed classes (Keras's
        mean over the last axis), and which samples count; else the values as they are."""
        if not self.mean_over_classes:
            return values, t.counted
        # sum, then divide (one division per sample; XLA fuses the sum with what feeds it)
        samples = ops.sum(values, axis=-1) / _observed_classes(ops, t, compute)[..., 0]
        return samples, ops.any(t.mask, axis=-1)

    def _denominator(self, ops: Ops, counted: Any, t: Prepared, p: Mapping[str, Any], compute: str):
        """What ``"mean"`` divides by: the number of counted entries; for ``"weighted_mean"``
        the sum of the class weights of the counted samples' targets (torch's weighted mean).
        None for ``"none"`` and ``"sum"``, which divide by nothing."""
        if self.reduction not in ("mean", "weighted_mean"):
            return None
        weights = ops.cast(counted, compute)
        w = p.get("class_weight")
        if self.reduction == "weighted_mean" and w is not None:
            if ops.shape(w):  # one weight per class: each sample's target's
                w = ops.sum(ops.one_hot(t.y, ops.shape(w)[0], compute) * w, axis=-1)
            weights = weights * w
        return ops.sum(weights)

    def _kernel(self, ops: Ops) -> Callable[..., Any] | None:
        """The backend's fused kernel for this loss and these settings, if it has one
        (``fn(x, y, in_range) -> value``, or None where the call needs the spec's formula)."""
        if ops.name not in self._kernels:
            find = getattr(ops, "fused_kernel", None)
            found = None
            if find is not None and not self.spec.heads:

                def fallback(x: Any, y: Any, parts: bool = False) -> Any:
                    """The spec's path for a batch the kernel's plain form does not hold for:
                    reduced, in the compute dtype. With ``parts``: the sum of the values and
                    what a mean divides it by (1 for a sum), for a kernel that runs the spec's
                    path on blocks of rows."""
                    if not parts:
                        return self._reduced(ops, x, y, (), self.fused, kernels=False)[0]
                    values, counted, t, p, compute = self._values(
                        ops, x, y, (), self.fused, kernels=False
                    )
                    denominator = self._denominator(ops, counted, t, p, compute)
                    total = ops.sum(values)
                    return total, (total * 0.0 + 1.0 if denominator is None else denominator)

                found = find(
                    self.name,
                    self.params,
                    self.reduction,
                    self.spec.per,
                    self.mean_over_classes,
                    fallback=fallback,
                )
            self._kernels.setdefault(ops.name, found)
        return self._kernels[ops.name]

    def _fused_fn(self, ops: Ops) -> tuple[Callable[..., Any], bool]:
        """The spec's value with its closed-form gradient as the backward, built once a backend,
        and whether it applies the NaN policy itself.

        Its inputs are the logits and the spec's heads (differentiated), the prepared targets
        and mask, and the per-class parameter tensors; the scalar parameters are fixed in the
        closure. A backend may have a kernel computing the same values in fewer passes
        (``values_kernel``: backends/jax_kernels.py, backends/tensorflow_kernels.py), which
        applies the NaN policy and the mask of missing labels itself, and may hand a batch it
        does not take to ``fallback``, the spec's path.
        """
        found = self._fused_fns.get(ops.name)
        if found is not None:
            return found
        spec_fn = self._spec_fused_fn(ops)
        kernel_for = getattr(ops, "values_kernel", None)
        if kernel_for is not None and not self._per_class and not self.spec.heads:
            per = self.spec.per

            def fallback(x: Any, y: Any, mask: Any) -> Any:
                """The spec's path for a batch the kernel does not take: the missing labels'
                logits masked, the fused formula, the NaN policy."""
                x = _mask_logits(ops, self.spec, x, mask)
                return _nan_in_nan_out(ops, per, x, spec_fn(x, y, mask))

            kernel = kernel_for(self.name, self.params, fallback)
            if kernel is not None:
                return self._fused_fns.setdefault(ops.name, (kernel, True))
        # dict.setdefault is atomic: threads racing on first use all get the same function
        return self._fused_fns.setdefault(ops.name, (spec_fn, False))

    def _spec_fused_fn(self, ops: Ops) -> Callable[..., Any]:
        """The spec's value with its closed-form gradient as the backward."""
        tensors, names = tuple(self._per_class), self.spec.heads
        spec, scalars = self.spec, {k: v for k, v in self.params.items() if k not in tensors}
        n_diff = 1 + len(names)

        def split(args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...], Prepared, dict[str, Any]]:
            x, heads, (y, mask, *values) = args[0], args[1:n_diff], args[n_diff:]
            p = {
                **scalars,
                **dict(zip(tensors, values, strict=True)),
                **dict(zip(names, heads, strict=True)),
            }
            return x, heads, Prepared(y, mask, None), p

        def value_fn(*args: Any) -> Any:
            x, _, t, p = split(args)
            return spec.value(ops, x, t, p)

        def vjp_fn(g: Any, *args: Any) -> Any:
            x, heads, t, p = split(args)
            return self._vjp(ops, g, x, heads, t, p)

        return ops.custom_vjp(value_fn, vjp_fn, n_diff)

    def _vjp(
        self, ops: Ops, g: Any, x: Any, heads: tuple[Any, ...], t: Prepared, p: Mapping[str, Any]
    ) -> Any:
        """The gradients for an upstream ``g`` on the unreduced values: with respect to the
        logits (one tensor), or to the logits and each head (a tuple)."""
        assert self.spec.grad is not None
        local = self.spec.grad(ops, x, t, p)
        d_heads: tuple[Any, ...] = ()
        if heads:
            local, *rest = local
            d_heads = tuple(g * d for d in rest)  # a head has one value per sample, like g
        per = self.spec.per
        # NaN in, NaN out: an element, sample or batch whose logits hold a NaN has a NaN value,
        # and so a NaN gradient for every input it depends on (missing ones were zeroed before)
        nan = x != x
        if per == "element":
            local = ops.where(nan, float("nan"), local)
        else:
            nan = ops.any(nan, axis=-1, keepdims=True) if per == "sample" else ops.any(nan)
            local = ops.where(nan, float("nan"), local)
            rows = nan if per == "batch" else ops.any(nan, axis=-1)
            d_heads = tuple(ops.where(rows, float("nan"), d) for d in d_heads)
        d_x = (ops.expand_dims(g, -1) if per == "sample" else g) * local
        return (d_x, *d_heads) if heads else d_x


def get(
    name: str,
    backend: str | None = None,
    reduction: str = "mean",
    *,
    fused: bool = True,
    mean_over_classes: bool = False,
    validate: bool = True,
    **params: Any,
) -> Loss:
    """The loss ``name`` with ``params``, ready to call as ``loss(logits, targets)``.

    ``backend``: ``"numpy"``, ``"torch"``, ``"tensorflow"`` (``"tf"``), ``"jax"`` or ``None``
    (inferred at each call from the tensors' type, importing nothing). ``reduction``:
    ``"none"`` (the finest values the loss defines), ``"sum"``, or ``"mean"`` (the mean of what
    ``"none"`` returns over the entries that are observed; 0 when none is). ``fused=False``
    differentiates the formula with the framework's autodiff instead of the spec's closed-form
    gradient (the two are proved equal by the tests). Unknown names, backends, reductions and
    parameters, and parameter values out of range, raise ``ValueError``/``TypeError``.

    ``validate`` (default True) checks the targets' values at each eager call (labels in
    [0, 1] or -1, class indices in [0, C) or the ignore index): one reduction and one read of
    a boolean. Inside a compiled trace (``jax.jit``, ``tf.function``, ``torch.compile``) the
    values cannot be read, and the check is skipped; ``validate=False`` skips it everywhere.
    Shape, dtype and parameter checks always run (they need no values).

    Equal plain arguments (names, numbers, booleans) return the same ``Loss``, resolved once;
    a ``Loss`` cannot be changed after it is made. Per-class arrays and tensors are resolved
    at each call.

    Two reductions exist so that frameworks' own losses map exactly (see docs/porting.md):
    ``mean_over_classes=True`` (element-wise losses) first averages each sample over its
    observed classes, as every Keras loss does over the last axis, and ``reduction`` then
    applies to those per-sample values; ``reduction="weighted_mean"`` (class-index losses)
    divides the sum by the sum of the class weights of the counted samples' targets, as
    torch's ``cross_entropy`` does with ``weight=`` (without class weights it is ``"mean"``).
    """
    spec = registry.spec(name)
    key = _cache_key(spec, backend, reduction, fused, mean_over_classes, validate, params)
    cached = _resolved.get(key) if key is not None else None
    if cached is not None:
        return cached
    if backend is not None:
        backend = _backends.canonical(backend)
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"{spec.name}: unknown reduction {reduction!r}; valid reductions: "
            f"{', '.join(REDUCTIONS)}"
        )
    if not isinstance(fused, bool):
        raise TypeError(f"{spec.name}: fused expects True or False; got {fused!r}")
    if not isinstance(validate, bool):
        raise TypeError(f"{spec.name}: validate expects True or False; got {validate!r}")
    if not isinstance(mean_over_classes, bool):
        raise TypeError(
            f"{spec.name}: mean_over_classes expects True or False; got {mean_over_classes!r}"
        )
    if mean_over_classes and spec.per != "element":
        raise ValueError(
            f"{spec.name}: mean_over_classes expects an element-wise loss; {spec.name} already "
            f"gives one value per {spec.per}"
        )
    if reduction == "weighted_mean" and spec.target_kind != "class_index":
        raise ValueError(
            f"{spec.name}: reduction 'weighted_mean' expects a loss on class indices (the "
            f"weights are those of each sample's target class); {spec.name} takes "
            f"{spec.target_kind.replace('_', '-')} targets"
        )
    loss = Loss(
        spec,
        backend,
        reduction,
        spec.resolve_params(params),
        fused=fused,
        mean_over_classes=mean_over_classes,
        validate=validate,
    )
    if key is not None:
        if len(_resolved) >= _RESOLVED_MAX:
            _resolved.clear()
        _resolved[key] = loss
    return loss


# get() resolved: the same arguments give the same (immutable) Loss, without checking the
# parameters and building the fused functions again. Keyed by the spec object's id (the
# cached Loss keeps that spec alive, so the id stays its own), so a loss unregistered and
# registered anew is resolved anew; arguments that are not plain Python values (arrays,
# tensors) are not cached.
_resolved: dict[tuple[Any, ...], Loss] = {}
_RESOLVED_MAX = 512
_PLAIN = (str, bool, int, float, type(None))


def _cache_key(spec: LossSpec, *args: Any) -> tuple[Any, ...] | None:
    *flags, params = args
    items = sorted(params.items())
    values = [*flags, *(v for _, v in items)]
    if not all(type(v) in _PLAIN for v in values):
        return None
    # the types too: True == 1 == 1.0, but a bool given for a float is an error to report
    return (id(spec), *((type(v), v) for v in flags), *((k, type(v), v) for k, v in items))


def require_shardable(loss: Loss, refused: str) -> None:
    """Raise ``ValueError`` naming ``refused`` (what asked for it) when ``loss`` cannot be
    split over replicas: a batch-level term (``per="batch"``) couples every sample of the
    batch, so no shard has a part of it that adds up. The data-parallel adapters and
    :meth:`Loss.sum_and_count` share this one refusal."""
    if loss.spec.per == "batch":
        raise ValueError(
            f"{loss.name}: {refused} is refused: its value couples every sample of the batch "
            f"(a class-wise term over the batch), so a shard's part does not add up to the "
            f"batch's loss; compute it on the whole batch (jax.jit with shardings does), or "
            f"gather every replica's logits and targets first"
        )


# helpers --------------------------------------------------------------------------------------


def _is_per_class(spec: LossSpec, name: str, value: Any) -> bool:
    return value is not None and spec.param(name).kind == "per_class"


def _prepare_targets(
    ops: Ops, spec: LossSpec, y: Any, compute: str, params: Mapping[str, Any]
) -> Prepared:
    """Missing labels masked: a negative multi-hot entry, or a class index equal to
    ``ignore_index``. NaN targets are not treated as missing: NaN in gives NaN out."""
    if spec.target_kind == "class_index":
        mask = y != params["ignore_index"]
        return Prepared(ops.where(mask, y, ops.zeros_like(y)), mask, mask)
    y = ops.cast(y, compute) if ops.dtype_name(y) != compute else y
    mask = ~(y < 0)
    safe = ops.where(mask, y, 0.0)
    # what "mean" counts: observed elements, samples with an observed label, or the batch
    if spec.per == "element":
        counted = mask
    elif spec.per == "sample":
        counted = ops.any(mask, axis=-1)
    else:
        counted = ops.any(mask)
    return Prepared(safe, mask, counted)


def _mask_logits(ops: Ops, spec: LossSpec, x: Any, mask: Any) -> Any:
    """The logits with 0 behind every missing label (a multi-hot entry, or a whole ignored
    sample), so that whatever they are (NaN, inf) they reach no value and no gradient."""
    observed = mask if spec.target_kind == "multi_hot" else ops.expand_dims(mask, -1)
    return ops.where(observed, x, 0.0)


def _nan_in_nan_out(ops: Ops, per: str, x: Any, values: Any) -> Any:
    """The non-finite policy, for every loss alike: an element, sample or batch whose logits
    hold a NaN is NaN, whatever a formula's where() or clip would have made of it. (A logit
    whose label is missing was set to 0 before, so it never counts.)"""
    nan = x != x
    if per == "sample":
        nan = ops.any(nan, axis=-1)
    elif per == "batch":
        nan = ops.any(nan)
    return ops.where(nan, float("nan"), values)


def _observed_classes(ops: Ops, t: Prepared, compute: str) -> Any:
    """Each sample's number of observed classes, at least 1, shaped (..., 1)."""
    return ops.maximum(ops.sum(ops.cast(t.mask, compute), axis=-1, keepdims=True), 1.0)


def _reduce(ops: Ops, values: Any, reduction: str, denominator: Any) -> Any:
    """``denominator``: what a mean divides by; when it is 0 nothing counted, and the sum (0)
    is returned rather than 0 / 0."""
    if reduction == "none":
        return values
    total = ops.sum(values)
    if reduction == "sum":
        return total
    return total / ops.where(denominator > 0, denominator, 1.0)


def _reduce_vjp(ops: Ops, values: Any, counted: Any, reduction: str, denominator: Any) -> Any:
    """The cotangent of the unreduced values for a cotangent of 1 on the reduced value."""
    ones = ops.where(counted, 1.0, ops.zeros_like(values))
    if reduction in ("mean", "weighted_mean"):
        return ones / ops.where(denominator > 0, denominator, 1.0)
    return ones
