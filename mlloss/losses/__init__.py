"""The catalog: one module per family. Importing this package registers every built-in loss."""

from mlloss.losses.binary import BCE, MULTILABEL_SOFT_MARGIN, SIGMOID_BCE
from mlloss.losses.divergence import ABS_KL, PARTITION
from mlloss.losses.focal import ASL, BCE_FOCAL, FOCAL, HILL, POLY1_FOCAL, SPLC
from mlloss.losses.ranking import BP_MLL, LSEP, MULTILABEL_HINGE, TWO_WAY, ZLPR
from mlloss.losses.softmax import (
    POLY1,
    PROBABILITY_CE,
    SOFTMAX_CE,
    SPARSE_PROBABILITY_CE,
    SPARSE_SOFTMAX_CE,
)
from mlloss.registry import register

BUILTIN = (
    SIGMOID_BCE,
    BCE,
    MULTILABEL_SOFT_MARGIN,
    SOFTMAX_CE,
    SPARSE_SOFTMAX_CE,
    PROBABILITY_CE,
    SPARSE_PROBABILITY_CE,
    POLY1,
    FOCAL,
    BCE_FOCAL,
    POLY1_FOCAL,
    ASL,
    HILL,
    SPLC,
    ZLPR,
    LSEP,
    BP_MLL,
    MULTILABEL_HINGE,
    TWO_WAY,
    ABS_KL,
    PARTITION,
)

for _spec in BUILTIN:
    register(_spec)

__all__ = ["BUILTIN"]
