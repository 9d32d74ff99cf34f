"""Backend names, loading and inference without importing frameworks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import FRAMEWORKS, backend_params, to_backend

from mlloss import backends
from mlloss.ops import Ops


def _run(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def test_import_mlloss_imports_no_framework():
    """Not even NumPy: it loads with the first backend or parameter array (issue 6: import
    time; NumPy alone takes about 55 ms to import here)."""
    out = _run(
        """
        import sys, mlloss
        names = ("torch", "tensorflow", "jax", "keras", "numpy")
        print(sorted(m for m in names if m in sys.modules))
        """
    )
    assert out == "[]"


def test_numpy_call_with_backend_none_imports_no_framework():
    out = _run(
        """
        import sys, numpy as np, mlloss
        mlloss.get("sigmoid_bce")(np.zeros((2, 3)), np.ones((2, 3)))
        mlloss.get("softmax_ce").value_and_grad(np.zeros((2, 3)), np.ones((2, 3)))
        print(sorted(m for m in ("torch", "tensorflow", "jax") if m in sys.modules))
        """
    )
    assert out == "[]"


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_a_backend_imports_only_its_own_framework(backend):
    """Loading a backend imports its framework and nothing the framework itself does not
    (TensorFlow 2.21 happens to import jax on its own)."""
    module = backends.FRAMEWORK_MODULE[backend]
    others = [backends.FRAMEWORK_MODULE[b] for b in FRAMEWORKS if b != backend]
    probe = f"print(sorted(m for m in {others!r} if m in sys.modules))"
    alone = _run(f"import sys, {module}\n{probe}")
    with_mlloss = _run(
        f"import sys, mlloss\nmlloss.get('sigmoid_bce', backend={backend!r})\n"
        f"assert {module!r} in sys.modules\n{probe}"
    )
    assert with_mlloss == alone


@pytest.mark.parametrize(
    ("given", "expected"),
    [("tf", "tensorflow"), ("TensorFlow", "tensorflow"), ("np", "numpy"), ("jax", "jax")],
)
def test_canonical_names_and_aliases(given, expected):
    assert backends.canonical(given) == expected


def test_unknown_backend_and_wrong_type():
    with pytest.raises(ValueError, match="unknown backend 'mxnet'; valid backends: numpy"):
        backends.canonical("mxnet")
    with pytest.raises(TypeError, match="backend must be a string or None"):
        backends.canonical(3)


@pytest.mark.parametrize("backend", backend_params())
def test_every_backend_implements_ops(backend):
    ops = backends.load(backend)
    assert isinstance(ops, Ops)
    assert ops.name == backend
    assert backends.load(backend) is ops


@pytest.mark.parametrize("backend", backend_params())
def test_inference_by_type(backend):
    tensor = to_backend(backend, np.zeros(3))
    assert backends.framework_of(tensor) == backend
    assert backends.infer(tensor, [1, 2, 3]) == backend


def test_python_values_infer_numpy():
    assert backends.framework_of([1.0]) is None
    assert backends.infer([1.0], 2.0) == "numpy"


@pytest.mark.parametrize("backend", backend_params(FRAMEWORKS))
def test_two_frameworks_in_one_call_name_both(backend):
    tensor = to_backend(backend, np.zeros(3))
    with pytest.raises(TypeError, match=f"two frameworks in one call: {backend} .* numpy"):
        backends.infer(tensor, np.zeros(3))


@pytest.mark.parametrize("backend", backend_params(["jax"]))
def test_jax_tracers_are_inferred_as_jax(backend):
    import jax

    seen = []
    jax.jit(lambda a: seen.append(backends.framework_of(a)) or a)(to_backend(backend, [1.0]))
    assert seen == ["jax"]
