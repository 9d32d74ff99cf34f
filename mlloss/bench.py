"""``mlloss bench``: forward + backward time of each loss on each backend, as ratios taken in
the same run against the framework's own loss, the best public implementation where one
exists, and one element-wise pass (``x + y``, the memory floor), with the peak memory of each
step.

Each timing is the median of repeated runs after warm-up. Like for like: torch runs eagerly
(mlloss and torch's own loss alike), TensorFlow inside one ``tf.function`` per loss, JAX under
``jax.jit``. For torch the bytes the autograd graph saves for the backward are reported too
(the fused backward should keep no more than the logits and the targets).

Peak memory is what one forward + backward allocates beyond what existed before, at its
highest, the returned gradient included: on torch from the profiler's memory timeline
(every tensor's creation and destruction), on JAX from XLA's buffer assignment of the
compiled step (its temporaries and outputs), on TensorFlow from the CPU allocator's peak.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import mlloss
from mlloss import backends
from mlloss import natives as native_lib

SHAPES = ((64, 80), (1024, 1000), (4096, 1000), (256, 20000))
#: the frameworks whose losses count as a backend's own, in order of preference: on
#: TensorFlow, Keras (its high-level API) where tf.nn has no such loss
FRAMEWORK_OF_BACKEND = {
    "torch": ("torch",),
    "tensorflow": ("tensorflow", "keras"),
    "jax": ("optax",),
}


@dataclass
class Row:
    loss: str
    backend: str
    shape: str
    dtype: str
    device: str
    mlloss_ms: float
    native: str | None
    native_ms: float | None
    public: str | None
    public_ms: float | None
    floor_ms: float
    saved_mb: float | None  # torch: what the backward keeps alive (mlloss)
    native_saved_mb: float | None
    # memory that forward + backward allocate beyond what existed before (the gradient
    # included), at its peak; None where it could not be measured
    peak_mb: float | None = None
    native_peak_mb: float | None = None

    @property
    def vs_native(self) -> float | None:
        return None if self.native_ms is None else self.mlloss_ms / self.native_ms

    @property
    def vs_public(self) -> float | None:
        return None if self.public_ms is None else self.mlloss_ms / self.public_ms

    @property
    def passes(self) -> float:
        return self.mlloss_ms / self.floor_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "vs_native": self.vs_native,
            "vs_public": self.vs_public,
            "passes": self.passes,
        }


@functools.cache
def _cache_bytes(level: int) -> int | None:
    """The size of this machine's level-``level`` data cache (cpu0's, from sysfs), or None
    where it does not say."""
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(root)):
            with open(f"{root}/{index}/level") as f:
                if int(f.read()) != level:
                    continue
            with open(f"{root}/{index}/type") as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(f"{root}/{index}/size") as f:
                text = f.read().strip()
            return int(text[:-1]) * 1024 if text.endswith("K") else int(text)
    except (OSError, ValueError):
        return None
    return None


def cache_flush(input_bytes: int, device: str) -> Callable[[], None] | None:
    """On the CPU, for inputs larger than a core's L2 cache: a function that writes a buffer
    twice the size of the last-level cache, run before every timed call so that each starts
    with its inputs in memory, not in the cache, as in training (the model's own step between
    two loss calls moves far more memory than that). Without it the floor, the cheapest call
    and the one whose inputs fit the cache best, measured 0.6-1.5 ms at 4096x1000 float32
    from run to run, by what ran before it. None elsewhere: small inputs stay in the cache in
    training too, and a GPU's memory is not the host's cache."""
    if device != "cpu" or input_bytes <= (_cache_bytes(2) or 2**20):
        return None
    buffer = np.zeros(2 * (_cache_bytes(3) or 32 * 2**20) // 8)

    def flush() -> None:
        buffer.__iadd__(1.0)

    return flush


def medians_ms(
    fns: Sequence[Callable[[], Any] | None],
    repeat: int,
    warmup: int = 2,
    rounds: int | None = None,
    before: Callable[[], Any] | None = None,
) -> list[float | None]:
    """The median time of each fn (None: not timed), in milliseconds, over ``repeat`` timed
    calls each.

    The calls come in rounds (up to seven): in each round every fn runs a block of its own
    calls in a row (after ``warmup`` untimed ones), as in a training loop, so the allocator holds
    what that fn's own step frees. A block of one fn's calls is the conservative case for
    the fns that allocate the most (the frameworks' composed losses): interleaving single
    calls leaves the allocator cold for them and flatters the others. The rounds spread each
    fn's calls over the run, so a drift of this shared machine's speed (its page-fault cost
    varies by 2x) reaches all of them alike. ``before`` (untimed) runs before every call:
    :func:`cache_flush`."""
    timed = [fn for fn in fns if fn is not None]
    times: list[list[float]] = [[] for _ in timed]
    if rounds is None:  # blocks of about three calls: a burst of load elsewhere spoils few
        rounds = max(1, min(7, repeat // 3))
    per_round = -(-repeat // rounds)
    for turn in range(rounds):
        for fn, spent in zip(timed, times, strict=True):
            for _ in range(warmup if turn == 0 else 1):
                fn()
            for _ in range(min(per_round, repeat - len(spent))):
                if before is not None:
                    before()
                start = time.perf_counter()
                fn()
                spent.append(time.perf_counter() - start)
    medians = iter(1e3 * statistics.median(spent) for spent in times)
    return [None if fn is None else next(medians) for fn in fns]


def _inputs(spec, shape, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=2.0, size=shape).astype(np.float32)
    if spec.input_kind == "probabilities":
        x = (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
        if spec.per == "sample":
            x = x / x.sum(axis=-1, keepdims=True)
    if spec.target_kind == "class_index":
        return x, rng.integers(0, shape[-1], size=shape[:-1])
    return x, (rng.random(shape) < 0.05).astype(np.float32)


def _native_for(spec, backend):
    """The backend framework's own loss computing spec at its defaults, reduced to a mean:
    ``((native, kwargs), average)``, ``average`` when the native's output is unreduced."""
    from mlloss.port import _target_native

    for framework in FRAMEWORK_OF_BACKEND.get(backend, ()):
        # a native reducing to the mean, else an unreduced one averaged by the framework
        for reduction, average in (("mean", False), ("none", True)):
            translation = native_lib.Translation(
                spec.name, spec.resolve_params({}), reduction, False, spec.target_kind
            )
            found = _target_native(spec, translation, (framework,))
            if found is not None:
                return found, average
    return None, False


def _native_fn(spec, backend, mean, labels_first=False):
    """(name, fn(x, y) -> the mean loss) of the backend framework's own loss, or (None, None)."""
    found, average = _native_for(spec, backend)
    if found is None:
        return None, None
    from mlloss.conformance.natives import resolve

    native, kwargs = found
    target = resolve(native.name)
    if isinstance(target, type):  # a Keras loss class: configured once, called (y, x)
        instance, target = target(**kwargs), None

    def fn(a, b):
        if target is None:
            out = instance(b, a)
        elif native.framework == "keras":
            out = target(b, a, **kwargs)
        else:
            out = target(labels=b, logits=a, **kwargs) if labels_first else target(a, b, **kwargs)
        return mean(out) if average else out

    return native.name, fn


def _asl_reference(torch):
    """ASL as the paper's reference code computes it (Ridnik et al., ICCV 2021), written here
    in torch from the paper: clip the negatives' probability, then the asymmetric focusing."""

    def asl(x, y, gamma_neg=4.0, gamma_pos=0.0, clip=0.05, eps=1e-8):
        p = torch.sigmoid(x)
        p_neg = (1 - p + clip).clamp(max=1)
        loss = y * torch.log(p.clamp(min=eps)) + (1 - y) * torch.log(p_neg.clamp(min=eps))
        pt = p * y + p_neg * (1 - y)
        gamma = gamma_pos * y + gamma_neg * (1 - y)
        loss = loss * torch.pow(1 - pt, gamma)
        return -loss.mean()

    return asl


def _torchvision_focal_reference(torch):
    """torchvision.ops.sigmoid_focal_loss as its documentation computes it, written here in
    torch (torchvision does not import beside the CPU torch build used here): the BCE with
    logits per entry times (1 - p_t)^gamma, no alpha (alpha=-1), the mean."""

    def focal(x, y, gamma=2.0):
        p = torch.sigmoid(x)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
        p_t = p * y + (1 - p) * (1 - y)
        return (bce * (1 - p_t) ** gamma).mean()

    return focal


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The profiler's native code writes its start and stop to file descriptor 2; the bench
    prints a table, so that goes to /dev/null while it runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def torch_peak_mb(run: Callable[[], Any], reset: Callable[[], Any] | None = None) -> float | None:
    """The most memory ``run()`` (one torch step) holds at once beyond what existed before,
    in MB: the profiler's memory timeline of its tensors, created minus destroyed, at its
    highest. ``reset`` runs after the warm-up call, to drop what the step keeps between calls
    (the fused kernels' scratch), so that it counts too. None where this torch has no such
    timeline (it is a private API)."""
    try:
        from torch.profiler import ProfilerActivity, profile
        from torch.profiler._memory_profiler import Action

        run()  # warm: what the first call allocates once is not the step's
        if reset is not None:
            reset()
        options = {"profile_memory": True, "record_shapes": True, "with_stack": True}
        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], **options) as prof:
            run()
        created, now, top = set(), 0, 0
        for _, action, (tensor, _), size in prof._memory_profile().timeline:
            if action == Action.CREATE:
                created.add(tensor)
                now += size
            elif action == Action.DESTROY and tensor in created:  # not what came before
                now -= size
            top = max(top, now)
        return top / 2**20
    except Exception:  # the private API moved in this torch release
        return None


def cuda_peak_mb(run: Callable[[], Any], reset: Callable[[], Any] | None = None) -> float:
    """The most memory ``run()`` (one torch step on the GPU) holds at once beyond what existed
    before, in MB, from CUDA's caching allocator (its peak of allocated bytes). ``reset`` runs
    after the warm-up call, to drop what the step leaves behind (the gradient it wrote), so
    that the step's own allocation of it counts."""
    import torch

    run()  # warm
    if reset is not None:
        reset()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def bench_torch(spec, shape, dtype, repeat, device="cpu"):
    import torch

    from mlloss.backends.torch_kernels import release_scratch

    kind = getattr(torch, dtype)
    x_np, y_np = _inputs(spec, shape)
    x = torch.tensor(x_np, dtype=kind, device=device, requires_grad=True)
    y = torch.tensor(y_np, device=device)
    if y_np.dtype.kind not in "iu":
        y = y.to(kind)
    on_gpu = x.device.type == "cuda"
    # a GPU runs kernels asynchronously: a timed call ends when the device is done with it
    done = torch.cuda.synchronize if on_gpu else lambda: None

    def step(fn):
        def run():
            x.grad = None
            fn(x, y).backward()
            done()

        return run

    def peak(fn, reset=None):
        if not on_gpu:
            return torch_peak_mb(step(fn), reset=reset)

        def drop():  # the gradient the warm-up wrote: the timed step writes its own
            x.grad = None

        return cuda_peak_mb(step(fn), reset=drop)

    def saved(fn):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(x, y)
        return total[0] / 2**20

    loss = mlloss.get(spec.name, backend="torch", validate=False)
    native_name, native_fn = _native_fn(spec, "torch", torch.mean)
    public_name, public_fn = None, None
    if spec.name == "asl":
        public_name, public_fn = "ASL paper reference (torch)", _asl_reference(torch)
    elif spec.name == "focal":
        try:
            from torchvision.ops import sigmoid_focal_loss

            public_name = "torchvision.ops.sigmoid_focal_loss"

            def public_fn(a, b):
                return sigmoid_focal_loss(a, b, alpha=-1, reduction="mean")
        except Exception:  # torchvision does not import beside this torch build
            public_name = "torchvision's sigmoid_focal_loss, its computation (torch)"
            public_fn = _torchvision_focal_reference(torch)
    # x + y into a buffer: one read of each and one write, no fresh allocation (whose page
    # faults would make the floor itself noisy); y itself is indices for the sparse losses
    other, out = torch.full_like(x.detach(), 0.5), torch.empty_like(x.detach())

    def floor():
        torch.add(x.detach(), other, out=out)
        done()

    mine, native, public, floor_ms = medians_ms(
        [
            step(loss),
            step(native_fn) if native_fn else None,
            step(public_fn) if public_fn else None,
            floor,
        ],
        repeat,
        before=cache_flush(2 * x.numel() * x.element_size(), x.device.type),
    )
    assert mine is not None and floor_ms is not None
    return Row(
        spec.name,
        "torch",
        "x".join(map(str, shape)),
        dtype,
        x.device.type,
        mine,
        native_name,
        native,
        public_name if public_fn else None,
        public,
        floor_ms,
        saved(loss),
        saved(native_fn) if native_fn else None,
        peak(loss, reset=release_scratch),
        peak(native_fn) if native_fn else None,
    )


def _bench_compiled(
    spec, backend, shape, dtype, device, repeat, compiled, mean, floor, peak=None, **native
):
    """One row for a backend that compiles: mlloss, the framework's own loss and the floor
    each run through ``compiled(fn)`` (fn(x, y) -> a scalar), which returns a timed step;
    ``peak(fn)`` measures a step's peak memory in MB (None: not measured)."""
    loss = mlloss.get(spec.name, backend=backend, validate=False)
    native_name, native_fn = _native_fn(spec, backend, mean, **native)
    size = int(np.prod(shape)) * np.dtype(dtype if dtype != "bfloat16" else "float16").itemsize
    mine, native_ms, floor_ms = medians_ms(
        [compiled(loss), compiled(native_fn) if native_fn else None, compiled(floor)],
        repeat,
        before=cache_flush(2 * size, device),
    )
    assert mine is not None and floor_ms is not None
    return Row(
        spec.name,
        backend,
        "x".join(map(str, shape)),
        dtype,
        device,
        mine,
        native_name,
        native_ms,
        None,
        None,
        floor_ms,
        None,
        None,
        peak(loss) if peak else None,
        peak(native_fn) if peak and native_fn else None,
    )


def bench_tensorflow(spec, shape, dtype, repeat, device="cpu"):
    import tensorflow as tf

    x_np, y_np = _inputs(spec, shape)
    with tf.device("GPU:0" if device == "cuda" else "CPU:0"):
        x = tf.Variable(x_np.astype(dtype))
        y = tf.identity(y_np if y_np.dtype.kind in "iu" else y_np.astype(dtype))

    def compiled(fn):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                value = fn(x, y)
            return tape.gradient(value, x)

        return lambda: run().numpy()

    def floor(a, b):
        return tf.reduce_sum(a + 1.0)

    allocator = "GPU:0" if device == "cuda" else "CPU:0"

    def peak(fn):
        """The allocator's peak during one step, above what it held before."""
        try:
            run = compiled(fn)
            run()
            tf.config.experimental.reset_memory_stats(allocator)
            before = tf.config.experimental.get_memory_info(allocator)["current"]
            run()
            grown = tf.config.experimental.get_memory_info(allocator)["peak"] - before
        except (ValueError, RuntimeError):  # an allocator that keeps no statistics
            return None
        # less than the gradient the step returns: the allocator did not see the step's
        # buffers (small ones come from elsewhere), so there is no measurement
        return grown / 2**20 if grown >= x.shape.num_elements() * x.dtype.size else None

    return _bench_compiled(
        spec,
        "tensorflow",
        shape,
        dtype,
        device,
        repeat,
        compiled,
        tf.reduce_mean,
        floor,
        peak,
        labels_first=True,
    )


def bench_jax(spec, shape, dtype, repeat, device="cpu"):
    import jax
    import jax.numpy as jnp

    x_np, y_np = _inputs(spec, shape)
    put = backends.load("jax").to_device
    x = put(jnp.asarray(x_np, dtype=dtype), device)
    labels = y_np.dtype.kind in "iu"
    y = put(jnp.asarray(y_np) if labels else jnp.asarray(y_np, dtype=dtype), device)

    def compiled(fn):
        run = jax.jit(jax.value_and_grad(fn))
        return lambda: jax.block_until_ready(run(x, y))

    def floor(a, b):
        return jnp.sum(a + 1.0)

    def peak(fn):
        """XLA's buffers for the compiled step: its temporaries and its outputs."""
        step = jax.jit(jax.value_and_grad(fn)).lower(x, y).compile()
        memory = step.memory_analysis()
        if memory is None:
            return None
        return (memory.temp_size_in_bytes + memory.output_size_in_bytes) / 2**20

    return _bench_compiled(
        spec, "jax", shape, dtype, device, repeat, compiled, jnp.mean, floor, peak
    )


RUNNERS = {"torch": bench_torch, "tensorflow": bench_tensorflow, "jax": bench_jax}

#: what ``import mlloss`` must not load
FRAMEWORKS = ("torch", "tensorflow", "jax", "keras", "optax")


def import_ms(repeat: int = 7) -> float:
    """``import mlloss`` in fresh interpreters, in ms (the median), its bytecode cached as an
    installed package's is: in a private cache (``PYTHONPYCACHEPREFIX``) that a first run,
    not counted, writes. Where ``PYTHONDONTWRITEBYTECODE`` is set, as on this project's
    machines, every import would otherwise compile the sources again, which doubled the time
    measured. Raises ``RuntimeError`` if the import loads a framework."""
    probe = (
        "import sys, time\n"
        "start = time.perf_counter()\n"
        "import mlloss\n"
        "print(1e3 * (time.perf_counter() - start))\n"
        f"print(','.join(m for m in {tuple(FRAMEWORKS)!r} if m in sys.modules))\n"
    )
    times = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, PYTHONPYCACHEPREFIX=cache)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for turn in range(repeat + 1):
            done = subprocess.run(
                [sys.executable, "-c", probe],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            elapsed, loaded = done.stdout.splitlines()  # the second line may be empty
            if loaded:
                raise RuntimeError(f"import mlloss loaded {loaded}")
            if turn:
                times.append(float(elapsed))
    return statistics.median(times)


def run(
    losses: Sequence[str] | None = None,
    backend_names: Sequence[str] | None = None,
    shapes: Sequence[tuple[int, int]] = SHAPES,
    repeat: int = 7,
    progress: Callable[[str], None] | None = None,
    device: str = "cpu",
    on_skip: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every (loss, backend, shape, dtype) asked for, on ``device`` ("cpu" or "cuda"); float32,
    and float16 and bfloat16 on torch. Losses with extra heads are left out (they have no
    framework counterpart), and so is a pairwise loss at a shape whose N x C x C
    intermediates would exhaust the memory (``on_skip`` hears why, once per loss and shape).
    Raises ``ValueError`` for a device an installed backend asked for cannot reach here."""
    told: set[tuple[str, tuple[int, int]]] = set()
    if device not in ("cpu", "cuda"):
        raise ValueError(f"bench: device expects 'cpu' or 'cuda'; got {device!r}")
    rows = []
    names = [n for n in (losses or mlloss.names()) if not mlloss.spec(n).heads]
    for backend in backend_names or list(RUNNERS):
        backend = backends.canonical(backend)
        if backend not in RUNNERS:
            raise ValueError(f"bench: backend expects one of {', '.join(RUNNERS)}; got {backend!r}")
        if not backends.installed(backend):
            continue
        reachable = backends.load(backend).devices()
        if device not in reachable:
            raise ValueError(
                f"bench: device {device!r} is not available to {backend} here "
                f"(it sees {', '.join(reachable)})"
            )
        dtypes = ("float32", "float16", "bfloat16") if backend == "torch" else ("float32",)
        for shape in shapes:
            for dtype in dtypes:
                for name in names:
                    too_large = _too_large(name, shape, backend, device)
                    if too_large:
                        if on_skip and (name, shape) not in told:
                            told.add((name, shape))
                            on_skip(too_large)
                        continue
                    if progress:
                        progress(f"{name} {backend} {shape} {dtype}")
                    spec = mlloss.spec(name)
                    rows.append(RUNNERS[backend](spec, shape, dtype, repeat, device=device))
    return rows


#: losses whose formula holds one entry per (positive, negative) pair of a sample: N x C x C
_PAIRWISE = frozenset({"multilabel_hinge"})
#: the (backend, device) pairs that compute a pairwise loss without holding all its pairs
#: (for labels in {0, 1}, as the bench's are): torch's kernel sorts each row, and so do
#: JAX's and TensorFlow's on the CPU (backends/jax_kernels.py, tensorflow_kernels.py; on a
#: GPU, unmeasured, they are left out)
_UNPAIRED = frozenset({("torch", "cpu"), ("torch", "cuda"), ("jax", "cpu"), ("tensorflow", "cpu")})
#: the most pair entries a bench step may hold (256 MB of float32 per intermediate)
_PAIRS_BUDGET = 2**26


def _too_large(name: str, shape: tuple[int, int], backend: str, device: str = "cpu") -> str | None:
    """Why (loss, shape) is left out of a bench run on ``backend`` and ``device``, or None: a
    pairwise loss's N x C x C intermediates at thousands of classes would exhaust a machine's
    memory (4096x1000 is 4.1e9 pairs, 16 GB for each float32 intermediate), not measure
    anything. torch's kernel holds no pairs, nor JAX's on the CPU (``_UNPAIRED``)."""
    rows, classes = shape
    pairs = rows * classes * classes
    unpaired = (backend, device) in _UNPAIRED
    if name not in _PAIRWISE or pairs <= _PAIRS_BUDGET or unpaired:
        return None
    return (
        f"skipped: {name} on {backend} at {rows}x{classes} holds {pairs:.1e} pairs "
        f"(N x C x C), {4 * pairs / 2**30:.0f} GiB for each float32 intermediate"
    )


def table(rows: Sequence[Row]) -> str:
    """A Markdown table of the ratios."""

    def ratio(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}x"

    lines = [
        "| loss | backend | device | shape | dtype | mlloss ms | vs native | vs best public | "
        "element-wise passes | peak MB (mlloss / native) | "
        "saved for backward (MB, mlloss / native) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def pair(mine: float | None, native: float | None) -> str:
        if mine is None:
            return "—"
        return f"{mine:.1f} / " + ("—" if native is None else f"{native:.1f}")

    for r in rows:
        lines.append(
            f"| {r.loss} | {r.backend} | {r.device} | {r.shape} | {r.dtype} | {r.mlloss_ms:.2f} | "
            f"{ratio(r.vs_native)} | {ratio(r.vs_public)} | {r.passes:.1f} | "
            f"{pair(r.peak_mb, r.native_peak_mb)} | {pair(r.saved_mb, r.native_saved_mb)} |"
        )
    return "\n".join(lines)
