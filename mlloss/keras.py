"""mlloss in Keras 3's idiom: :class:`Loss`, a ``keras.losses.Loss`` for
``model.compile(loss=...)``, on every Keras backend (TensorFlow, JAX, torch).

>>> model.compile(optimizer="adam", loss=mlloss.keras.Loss("focal", gamma=2.0))  # doctest: +SKIP

It is serializable: a model saved with it (``model.save("m.keras")``) loads again with
``keras.models.load_model`` once ``mlloss.keras`` is imported (it registers the class).
"""

from __future__ import annotations

from typing import Any

import keras

import mlloss


@keras.saving.register_keras_serializable(package="mlloss")
class Loss(keras.losses.Loss):
    """``mlloss.get(loss, reduction=..., **params)`` as a Keras loss, on the backend Keras
    runs. The value is mlloss's reduction (default the mean over the observed entries, missing
    labels left out of the count); ``sample_weight`` is refused, since it would weight an
    already-reduced value: use the loss's own ``class_weight``/``pos_weight``, or
    ``reduction="none"`` for Keras to weight and reduce (its mean then counts every entry).
    """

    def __init__(
        self,
        loss: str,
        /,
        *,
        reduction: str = "mean",
        mean_over_classes: bool = False,
        name: str | None = None,
        **params: Any,
    ) -> None:
        self._loss = mlloss.get(
            loss, reduction=reduction, mean_over_classes=mean_over_classes, **params
        )
        super().__init__(name=name or f"mlloss_{self._loss.name}")
        # the arguments as given, for get_config (the Loss holds them resolved)
        self.params = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in params.items()}

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        if sample_weight is not None and self._loss.reduction != "none":
            raise ValueError(
                f"{self._loss.name}: sample_weight would weight an already reduced value; pass "
                f"class_weight/pos_weight to the loss, or reduction='none' so that Keras "
                f"weights each value and reduces"
            )
        return super().__call__(y_true, y_pred, sample_weight)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        if self._loss.spec.target_kind == "class_index":
            # Keras hands the targets over in the loss's float dtype
            y_true = keras.ops.cast(y_true, "int32")
        return self._loss(y_pred, y_true)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "loss": self._loss.name,
            "reduction": self._loss.reduction,
            "mean_over_classes": self._loss.mean_over_classes,
            "params": dict(self.params),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        config = dict(config)
        params = config.pop("params", {})
        return cls(config.pop("loss"), **config, **params)


__all__ = ["Loss"]
