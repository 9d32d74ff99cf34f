"""The vocabulary the catalog's specs use to list their frameworks' own losses.

Each spec lists its natives (:class:`mlloss.spec.Native`) next to its formula; what several
natives share (Keras's class arguments, torch's reduction argument, the converters for the
arguments that are not a plain rename) is written once here. Nothing here imports a framework:
a native is data until :mod:`mlloss.natives` translates it or the conformance suite runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlloss.spec import REQUIRED, Native

#: ``reduction=`` of torch's losses
TORCH_REDUCTION = {"reduction": "mean"}
#: what every Keras ``Loss`` class takes besides its own arguments: ``name`` and ``dtype`` do
#: not change what is computed (Keras computes in ``dtype``, float32 by default; mlloss in the
#: input's dtype)
KERAS_CLASS = {"reduction": "sum_over_batch_size", "name": None, "dtype": None}
KERAS_INERT = ("name", "dtype")
#: a keyword whose one accepted value is the native's default
LAST_AXIS = {"axis": -1}
NO_WHERE = {"where": None}


def keras_alpha(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keras's focal applies ``alpha`` only with ``apply_class_balancing=True``."""
    return {"alpha": kwargs["alpha"] if kwargs["apply_class_balancing"] else None}


def keras_alpha_inverse(params: Mapping[str, Any]) -> dict[str, Any]:
    if params["alpha"] is None:
        return {"apply_class_balancing": False}
    return {"apply_class_balancing": True, "alpha": params["alpha"]}


def torchvision_alpha(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """torchvision's ``alpha`` defaults to 0.25; a negative one means no balancing."""
    alpha = kwargs["alpha"]
    return {"alpha": None if alpha < 0 else alpha}


def torchvision_alpha_inverse(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"alpha": -1.0 if params["alpha"] is None else params["alpha"]}


def keras_ignore_class(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keras's ``ignore_class=None`` ignores nothing; mlloss always has an ignore index, and
    its default (-100) is never a valid class index."""
    ignore = kwargs["ignore_class"]
    return {"ignore_index": -100 if ignore is None else ignore}


def keras_ignore_class_inverse(params: Mapping[str, Any]) -> dict[str, Any]:
    return {"ignore_class": params["ignore_index"]}


def optax_smooth_labels(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``smooth_labels=a``: the targets first went through ``optax.smooth_labels(labels, a)``,
    which moves them toward 1/C."""
    return {"label_smoothing": kwargs["smooth_labels"]}


def optax_smooth_labels_binary(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if kwargs["smooth_labels"]:
        raise ValueError(
            "smooth_labels: optax.smooth_labels moves binary targets toward 1/C, while "
            "sigmoid_bce's label_smoothing moves them toward 0.5 (Keras's convention): no "
            "exact mapping; pass the smoothed targets instead"
        )
    return {}


def keras_pair(
    class_name: str,
    function: str,
    own: Mapping[str, Any],
    *,
    reduce_elements: bool,
    when: Mapping[str, Any],
    note: str,
    **translation: Any,
) -> tuple[Native, Native]:
    """A Keras loss in both its forms: the ``Loss`` class (reduced by ``reduction=``) and the
    loss function (one value per sample). ``own``: the arguments both forms take."""
    per_sample = "per-sample mean over the last axis" if reduce_elements else "per sample"
    return (
        Native(
            f"keras.losses.{class_name}",
            "keras",
            {**own, **KERAS_CLASS},
            "keras",
            inert=KERAS_INERT,
            when=when,
            targets_first=True,
            note=note,
            **translation,
        ),
        Native(
            f"keras.losses.{function}",
            "keras",
            dict(own),
            "per_sample",
            when=when,
            targets_first=True,
            note=f"{note}; unreduced ({per_sample})",
            **translation,
        ),
    )


__all__ = [
    "KERAS_CLASS",
    "KERAS_INERT",
    "LAST_AXIS",
    "NO_WHERE",
    "REQUIRED",
    "TORCH_REDUCTION",
    "keras_alpha",
    "keras_alpha_inverse",
    "keras_ignore_class",
    "keras_ignore_class_inverse",
    "keras_pair",
    "optax_smooth_labels",
    "optax_smooth_labels_binary",
    "torchvision_alpha",
    "torchvision_alpha_inverse",
]
