"""mlloss: each classification loss defined once, run on NumPy, TensorFlow, PyTorch and JAX.

>>> import mlloss
>>> loss = mlloss.get("sigmoid_bce", backend="numpy", reduction="mean")
>>> float(loss([[0.0, 2.0]], [[1, 0]]))  # doctest: +ELLIPSIS
1.41...

Importing mlloss imports no framework; a backend loads when it is first used.
"""

from mlloss import losses as _losses  # noqa: F401  (registers the catalog)
from mlloss._version import __version__
from mlloss.loss import REDUCTIONS, Loss, get
from mlloss.natives import NativeLoss, from_native
from mlloss.ops import Ops
from mlloss.registry import names, register, spec, unregister
from mlloss.spec import LossSpec, Native, Param, Prepared

# the adapters import their framework, so they load on first access: mlloss.torch.Loss, ...
_ADAPTERS = ("keras", "torch", "jax", "tensorflow")


def __getattr__(name: str):
    if name in _ADAPTERS:
        import importlib

        return importlib.import_module(f"mlloss.{name}")
    raise AttributeError(f"module 'mlloss' has no attribute {name!r}")


__all__ = [
    "REDUCTIONS",
    "Loss",
    "LossSpec",
    "Native",
    "NativeLoss",
    "Ops",
    "Param",
    "Prepared",
    "__version__",
    "from_native",
    "get",
    "names",
    "register",
    "spec",
    "unregister",
]
