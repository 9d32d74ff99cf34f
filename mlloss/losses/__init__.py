"""The catalog: one module per family. Importing this package registers every built-in loss."""

from mlloss.losses.binary import BCE, SIGMOID_BCE
from mlloss.losses.softmax import SOFTMAX_CE, SPARSE_SOFTMAX_CE
from mlloss.registry import register

BUILTIN = (SIGMOID_BCE, BCE, SOFTMAX_CE, SPARSE_SOFTMAX_CE)

for _spec in BUILTIN:
    register(_spec)

__all__ = ["BUILTIN"]
