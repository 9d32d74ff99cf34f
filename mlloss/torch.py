"""mlloss in PyTorch's idiom: :class:`Loss`, an ``nn.Module`` over :func:`mlloss.get`.

>>> criterion = mlloss.torch.Loss("focal", gamma=2.0)       # doctest: +SKIP
>>> criterion(model(x), y).backward()                         # doctest: +SKIP

Per-class tensor parameters (``pos_weight``, ``class_weight``) are buffers: they move with
``.to(device)``, appear in ``state_dict()``, and the loss follows them when they change.
Under ``torch.autocast`` the loss runs with autocast off, in float32, as torch's own losses do.
With ``data_parallel=True`` the mean is the whole global batch's (see docs/data-parallel.md).
"""

from __future__ import annotations

from typing import Any

import torch

import mlloss
from mlloss.loss import require_shardable


class Loss(torch.nn.Module):
    """``mlloss.get(loss, backend="torch", ...)`` as a module: ``criterion(logits, targets,
    **heads)``.

    ``data_parallel=True`` (with ``torch.distributed`` initialised, as under
    ``DistributedDataParallel``): each replica returns its shard's sum times the world size
    over the global count (all-reduced), so that DDP's averaging of gradients gives the
    gradient of the global batch's mean, and the replicas' values average to it, however
    unevenly the samples and missing labels fall. ``reduction="sum"`` is scaled by the world
    size alone. A loss with a batch-level term (``two_way``) is refused there.
    """

    def __init__(
        self,
        loss: str,
        /,
        *,
        reduction: str = "mean",
        mean_over_classes: bool = False,
        validate: bool = True,
        data_parallel: bool = False,
        process_group: Any = None,
        **params: Any,
    ) -> None:
        super().__init__()
        spec = mlloss.spec(loss)
        self.loss = spec.name
        self.data_parallel = data_parallel
        self.process_group = process_group
        self._settings = {
            "reduction": reduction,
            "mean_over_classes": mean_over_classes,
            "validate": validate,
        }
        self._scalars: dict[str, Any] = {}
        self._tensor_params: list[str] = []
        for name, value in params.items():
            tensor_like = not isinstance(value, (int, float, bool, str, type(None)))
            if spec.param(name).kind == "per_class" and tensor_like:
                self.register_buffer(name, torch.as_tensor(value).detach().clone())
                self._tensor_params.append(name)
            else:
                self._scalars[name] = value
        # checks every argument now (a clear error at construction, not at the first call)
        self._built = self._build()
        self._key = self._buffers_key()
        if data_parallel:
            require_shardable(self._built, "data_parallel=True")

    def _build(self) -> mlloss.Loss:
        tensors = {name: getattr(self, name) for name in self._tensor_params}
        return mlloss.get(self.loss, backend="torch", **self._settings, **self._scalars, **tensors)

    def _buffers_key(self) -> tuple[Any, ...]:
        # a buffer replaced (.to, load_state_dict(assign=True)) or written in place
        return tuple((id(b), b._version) for b in (getattr(self, n) for n in self._tensor_params))

    @property
    def criterion(self) -> mlloss.Loss:
        """The :class:`mlloss.Loss` behind the module, for the buffers' current values."""
        key = self._buffers_key()
        if key != self._key:
            self._built, self._key = self._build(), key
        return self._built

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, **heads: Any) -> torch.Tensor:
        device = logits.device.type
        if torch.is_autocast_enabled(device):
            with torch.autocast(device, enabled=False):
                floats = {k: v.float() for k, v in heads.items()}
                return self._compute(logits.float(), targets, floats)
        return self._compute(logits, targets, heads)

    def _compute(self, logits, targets, heads):
        criterion = self.criterion
        reduction = self._settings["reduction"]
        if not self.data_parallel or reduction == "none" or not _distributed():
            return criterion(logits, targets, **heads)
        import torch.distributed as dist

        world = dist.get_world_size(self.process_group)
        total, count = criterion.sum_and_count(logits, targets, **heads)
        if reduction == "sum":
            return total * world
        count = count.detach().clone()
        dist.all_reduce(count, group=self.process_group)
        return total * world / torch.where(count > 0, count, torch.ones_like(count))

    def decode(self, logits: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Predicted 0/1 labels by the loss's own rule (see :meth:`mlloss.Loss.decode`)."""
        return self.criterion.decode(logits, **kwargs)

    def extra_repr(self) -> str:
        shown = [repr(self.loss)]
        shown += [f"{k}={v!r}" for k, v in self._settings.items() if k != "validate" or not v]
        shown += [f"{k}={v!r}" for k, v in self._scalars.items()]
        if self.data_parallel:
            shown.append("data_parallel=True")
        return ", ".join(shown)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


__all__ = ["Loss"]
