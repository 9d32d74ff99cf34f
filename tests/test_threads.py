"""Many threads on first use: mlloss.get and the losses called at once while the backends load
(in a fresh interpreter, where no backend module has been imported yet)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import importlib.util, random, sys, threading
    import numpy as np
    frameworks = [m for m in ("torch", "tensorflow", "jax") if importlib.util.find_spec(m)]
    for m in frameworks:          # the user's own imports (torch before TensorFlow)
        __import__(m)
    if "jax" in frameworks:
        import jax
        jax.config.update("jax_enable_x64", True)
    import mlloss
    assert not [m for m in sys.modules if m.startswith("mlloss.backends.")]

    backends = ["numpy", *frameworks]
    names = [n for n in mlloss.names() if not mlloss.spec(n).heads]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 5))
    dense = (rng.random((6, 5)) < 0.4).astype(np.float64)
    index = rng.integers(0, 5, size=6)

    def inputs(name):
        spec = mlloss.spec(name)
        p = 1.0 / (1.0 + np.exp(-x)) if spec.input_kind == "probabilities" else x
        return p, (index if spec.target_kind == "class_index" else dense)

    def to(backend, a):
        return mlloss.backends.load(backend).asarray(a) if backend != "numpy" else a

    jobs = [(random.Random(i).choice(names), backends[i // 2 % len(backends)]) for i in range(48)]
    results, errors = {}, []
    start = threading.Barrier(len(jobs))

    # one loss per name shared by every thread, its backend inferred at each call
    shared = {n: mlloss.get(n, reduction="sum") for n in names}

    def work(i, name, backend):
        try:
            start.wait()
            if i % 2:
                loss = shared[name]
            else:
                loss = mlloss.get(name, backend=backend, reduction="sum")
            p, y = inputs(name)
            ops = mlloss.backends.load(backend)
            value = loss(to(backend, p), to(backend, y))
            results[i] = float(np.asarray(ops.to_numpy(value)))
        except Exception as error:  # reported below
            errors.append(f"{name} on {backend}: {error!r}")

    threads = [threading.Thread(target=work, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, (name, backend) in enumerate(jobs):
        expected = float(mlloss.get(name, backend="numpy", reduction="sum")(*inputs(name)))
        assert np.isclose(results[i], expected, rtol=1e-12), (name, backend, results[i], expected)
    print("ok", len(jobs), sorted(set(backends)))
    """
)


def test_threads_on_first_use_all_get_correct_results():
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("ok 48")
