"""``mlloss port``: a framework's own loss, written as code, as the equivalent code for another
framework, checked numerically before it is printed.

The target is the target framework's own loss where one computes exactly the same thing (the
same spec, parameters and reduction), and ``mlloss.get(...)`` otherwise. The check runs the
source and the target on random inputs in float64 (each framework that is installed, live)
and compares values and gradients; what was compared, and how closely, is printed with the
code.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlloss import natives as native_lib
from mlloss import registry
from mlloss.spec import LossSpec, Native

#: where ``--to`` looks for a target framework's own losses, and which mlloss backend runs
#: the ``mlloss.get`` fallback there
TARGETS: dict[str, tuple[tuple[str, ...], str]] = {
    "numpy": ((), "numpy"),
    "torch": (("torch", "torchvision"), "torch"),
    "tensorflow": (("tensorflow",), "tensorflow"),
    "jax": ((), "jax"),
    "keras": (("keras",), "tensorflow"),
    "optax": (("optax",), "jax"),
}
#: agreement required of the check, in float64 (values and gradients, relative to the largest)
CHECK_RTOL = 1e-9
_BATCHES, _N, _C = 3, 8, 5
#: the keywords natives take their data by (never a loss argument)
_DATA_ARGUMENTS = ("labels", "logits", "y_true", "y_pred", "input", "target", "inputs", "targets")


@dataclass(frozen=True)
class Ported:
    """The result of :func:`port`: the code, what was checked, and whether it agreed."""

    code: str
    checked: str
    agreed: bool


def parse(expression: str) -> tuple[str, dict[str, Any]]:
    """``"keras.losses.BinaryFocalCrossentropy(alpha=0.25)"`` -> (name, keyword arguments).
    Positional arguments that are plain names (``logits``, ``y``) are the call's data and are
    ignored; ``optax.smooth_labels(labels, a)`` as the targets becomes ``smooth_labels=a``."""
    try:
        tree = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError as error:
        raise ValueError(
            f"port: cannot read {expression!r} as a Python call ({error.msg})"
        ) from None
    node = tree.func if isinstance(tree, ast.Call) else tree
    name = _dotted(node)
    if name is None:
        raise ValueError(
            f"port: expected a loss name or call, like keras.losses.X(...); got {expression!r}"
        )
    kwargs: dict[str, Any] = {}
    if isinstance(tree, ast.Call):
        for key, value in [
            *((None, a) for a in tree.args),
            *((k.arg, k.value) for k in tree.keywords),
        ]:
            smooth = _smooth_labels(value)
            if smooth is not None:
                kwargs["smooth_labels"] = smooth
            elif isinstance(value, ast.Name) or key in _DATA_ARGUMENTS:
                continue
            elif key is None:
                raise ValueError(
                    f"port: positional argument {ast.unparse(value)!r}: pass the "
                    f"loss's arguments by keyword"
                )
            else:
                try:
                    kwargs[key] = ast.literal_eval(value)
                except ValueError:
                    raise ValueError(
                        f"port: argument {key}={ast.unparse(value)}: expected a "
                        f"literal (a number, string, list, True/False/None)"
                    ) from None
    return name, kwargs


def port(expression: str, to: str, check: bool = True) -> Ported:
    """The code for framework ``to`` that computes what ``expression`` computes; with
    ``check``, after running both on random inputs."""
    if to not in TARGETS:
        raise ValueError(f"port: --to expects one of {', '.join(TARGETS)}; got {to!r}")
    name, kwargs = parse(expression)
    # a kind of target these arguments refuse (ValueError) has no code to port
    found = [
        (n, t) for n, t in native_lib.translate(name, **kwargs) if not isinstance(t, Exception)
    ]
    source = found[0][0]
    frameworks, backend = TARGETS[to]
    lines = [f"# {expression.strip()}, in {to}:"]
    checks: list[str] = []
    agreed = True
    for native, translation in found:
        spec = registry.spec(translation.loss)
        target = _target_native(spec, translation, frameworks)
        if target is not None and not _native_runs(target[0]):
            lines.append(
                f"# {_native_code(*target)} is the same; not checked here "
                f"({target[0].framework} is not installed)"
            )
            target = None
        if len(found) > 1:
            lines.append(f"# {translation.targets.replace('_', '-')} targets:")
        if target is None:
            shown_backend = None if to == "keras" else backend
            lines += [
                "import mlloss",
                f"loss = {translation.call(shown_backend)}",
                "value = loss(predictions, targets)  # mlloss takes predictions first",
            ]
        else:
            lines += _native_lines(*target)
        if check:
            text, ok = _check(source, native, kwargs, translation, spec, target, backend)
            checks.append(text)
            agreed = agreed and ok
    return Ported("\n".join(lines), "\n".join(checks) or "not checked", agreed)


# the target ------------------------------------------------------------------------------------


def _target_native(
    spec: LossSpec, translation: native_lib.Translation, frameworks: tuple[str, ...]
) -> tuple[Native, dict[str, Any]] | None:
    """A native of the target frameworks computing exactly ``translation``, with its
    arguments (its reduction argument chosen to match), or None."""
    for native in spec.natives:
        if native.framework not in frameworks:
            continue
        kwargs = native_lib.native_kwargs(spec, native, translation.params)
        if kwargs is None or (native.targets or spec.target_kind) != translation.targets:
            continue
        for reduction in _reduction_choices(native):
            full = {**native.args, **kwargs, **reduction}
            out = native_lib._reduction(spec, native, full)
            if _same_output(spec, translation, out):
                return native, {**kwargs, **reduction}
    return None


def _reduction_choices(native: Native) -> list[dict[str, Any]]:
    if native.reduce in ("reduction", "index_reduction"):
        return [{"reduction": r} for r in ("mean", "sum", "none")]
    if native.reduce == "keras":
        return [{}, {"reduction": "sum"}, {"reduction": "none"}]
    return [{}]


def _same_output(spec: LossSpec, t: native_lib.Translation, out: tuple[str, bool]) -> bool:
    """Whether a reduction computes what ``t``'s does on natives' inputs (no missing labels):
    the mean of per-sample means over classes is the mean over elements, and a weighted mean
    without weights is the mean."""

    def normal(reduction: str, class_mean: bool) -> tuple[str, bool]:
        if reduction == "weighted_mean" and t.params.get("class_weight") is None:
            reduction = "mean"
        if reduction == "mean" and class_mean and spec.per == "element":
            class_mean = False
        return reduction, class_mean

    return normal(t.reduction, t.mean_over_classes) == normal(*out)


def _native_runs(native: Native) -> bool:
    from mlloss.conformance.natives import installed

    return installed(native.framework)


def _native_code(native: Native, kwargs: Mapping[str, Any]) -> str:
    args = ", ".join(f"{k}={_literal(native, v)}" for k, v in kwargs.items())
    if native.reduce in ("keras",):
        return f"{native.name}({args})"
    data = (
        "labels=targets, logits=predictions"
        if native.framework == "tensorflow"
        else ("targets, predictions" if native.targets_first else "predictions, targets")
    )
    return f"{native.name}({data}{', ' if args else ''}{args})"


def _native_lines(native: Native, kwargs: Mapping[str, Any]) -> list[str]:
    module = native.name.split(".")[0]
    imports = {
        "tf": "import tensorflow as tf",
        "optax": "import optax",
        "keras": "import keras",
        "torch": "import torch",
        "torchvision": "import torchvision",
    }
    code = _native_code(native, kwargs)
    if native.reduce == "keras":
        return [
            imports[module],
            f"loss = {code}",
            "value = loss(targets, predictions)  # Keras takes the targets first",
        ]
    return [imports[module], f"value = {code}"]


def _literal(native: Native, value: Any) -> str:
    if isinstance(value, np.ndarray):
        items = value.tolist()
        if native.framework in ("torch", "torchvision") and np.ndim(items):
            return f"torch.tensor({items!r})"
        return repr(items)
    return repr(value)


# the check -------------------------------------------------------------------------------------


def _check(source, source_native, kwargs, translation, spec, target, backend) -> tuple[str, bool]:
    """Run the source native (when installed) and the target on random float64 inputs."""
    import mlloss
    from mlloss.conformance import natives as runs

    inputs = [_inputs(spec, translation, source_native, kwargs, seed) for seed in range(_BATCHES)]
    if runs.installed(source_native.framework):
        reference_name = (
            f"{source.name} ({source_native.framework} {runs.version(source_native.framework)})"
        )

        def reference(x, y):
            return runs.call(
                source_native, source.name, x, y, _native_args(source_native, kwargs), "float64"
            )
    else:
        reference_name = (
            f"mlloss's translation on numpy ({source_native.framework} is not installed)"
        )
        ref_loss = mlloss.from_native(source.name, backend="numpy", **kwargs)

        def reference(x, y):
            return tuple(np.asarray(v, dtype=np.float64) for v in ref_loss.value_and_grad(x, y))

    if target is not None:
        target_native, target_kwargs = target
        framework = target_native.framework
        target_name = f"{target_native.name} ({framework} {runs.version(framework)})"

        def candidate(x, y):
            return runs.call(
                target_native,
                target_native.name,
                x,
                y,
                _native_args(target_native, target_kwargs),
                "float64",
            )
    else:
        loss = mlloss.get(
            translation.loss,
            backend=backend,
            reduction=translation.reduction,
            mean_over_classes=translation.mean_over_classes,
            **translation.params,
        )
        target_name = f"{translation.call(backend)}"
        if backend == "jax":  # the check runs in float64
            import jax

            jax.config.update("jax_enable_x64", True)
        ops = mlloss.backends.load(backend)

        def candidate(x, y):
            if translation.targets == "padded_indices":
                y = native_lib._padded_to_multi_hot(x, y, "numpy")
            xv = ops.asarray(x, dtype="float64")
            yv = ops.asarray(y, dtype="float64" if y.dtype.kind == "f" else None)
            value, grad = loss.value_and_grad(xv, yv)
            return np.asarray(ops.to_numpy(value), np.float64), np.asarray(
                ops.to_numpy(grad), np.float64
            )

    worst_value = worst_grad = 0.0
    for x, y in inputs:
        ref_value, ref_grad = reference(x, y)
        value, grad = candidate(x, y)
        worst_value = max(worst_value, _relative(value, ref_value))
        worst_grad = max(worst_grad, _relative(grad, ref_grad))
    ok = worst_value <= CHECK_RTOL and worst_grad <= CHECK_RTOL
    verdict = "agree" if ok else "DISAGREE"
    shape = "x".join(map(str, inputs[0][0].shape))
    return (
        f"checked: {reference_name} against {target_name} on {_BATCHES} random {shape} "
        f"batches in float64: {verdict}; largest relative difference {worst_value:.1e} in "
        f"values, {worst_grad:.1e} in gradients (limit {CHECK_RTOL:g})"
    ), ok


def _native_args(native: Native, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Array arguments as NumPy arrays (the runners make them tensors)."""
    out = {}
    for key, value in kwargs.items():
        out[key] = (
            np.asarray(value, dtype=np.float64) if isinstance(value, (list, tuple)) else value
        )
    return out


def _inputs(spec, translation, native, kwargs, seed) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = _C
    for value in translation.params.values():
        if isinstance(value, np.ndarray) and value.ndim == 1:
            classes = value.shape[0]
    x = rng.normal(scale=3.0, size=(_N, classes))
    if spec.input_kind == "probabilities":
        x = 1.0 / (1.0 + np.exp(-x))
    if spec.target_kind == "class_index":
        return x, rng.integers(0, classes, size=_N)
    y = (rng.random((_N, classes)) < 0.4).astype(np.float64)
    if translation.targets == "padded_indices":
        from mlloss.conformance.natives import as_native_targets

        return x, as_native_targets(native, spec, y)
    return x, y


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    if got.shape != expected.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    return float(np.max(np.abs(got - expected), initial=0.0)) / scale


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _smooth_labels(node: ast.AST) -> float | None:
    """``optax.smooth_labels(labels, a)`` (or ``alpha=a``): a."""
    if (
        not isinstance(node, ast.Call)
        or (_dotted(node.func) or "").split(".")[-1] != "smooth_labels"
    ):
        return None
    values = [*node.args[1:], *(k.value for k in node.keywords if k.arg == "alpha")]
    if len(values) != 1:
        raise ValueError("port: optax.smooth_labels expects (labels, alpha)")
    return float(ast.literal_eval(values[0]))
