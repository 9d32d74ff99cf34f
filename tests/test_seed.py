"""The question's worked example: sigmoid_bce reproduces TensorFlow's printed per-element
losses on all four backends, in one test process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import backend_params, to_backend, to_numpy

import mlloss
from mlloss.conformance import seed

SHARED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "fixture.json"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/seed is not beside this checkout")
def test_packaged_fixture_is_the_shared_seed():
    assert json.loads(SHARED.read_text()) == json.loads(
        (Path(seed.__file__).parent / "fixtures" / "seed_worked_example.json").read_text()
    )


@pytest.mark.parametrize("backend", backend_params())
def test_per_element_losses_match_the_printed_table(backend):
    example = seed.load()
    loss = mlloss.get("sigmoid_bce", backend=backend, reduction="none")
    value = loss(to_backend(backend, example.logits), to_backend(backend, example.labels))
    assert backend == "numpy" or mlloss.backends.framework_of(value) == backend
    np.testing.assert_allclose(to_numpy(backend, value), example.printed_loss, rtol=0, atol=5e-7)


@pytest.mark.parametrize("backend", backend_params())
def test_sum_over_batch_is_the_answers_reduce_mean_of_row_sums(backend):
    example = seed.load()
    x = to_backend(backend, example.logits)
    y = to_backend(backend, example.labels)
    total = to_numpy(backend, mlloss.get("sigmoid_bce", backend=backend, reduction="sum")(x, y))
    per_element = to_numpy(
        backend, mlloss.get("sigmoid_bce", backend=backend, reduction="none")(x, y)
    )
    n, c = example.logits.shape
    # against our own per-element values: exact up to float32 summation order
    assert total / n == pytest.approx(np.mean(np.sum(per_element, axis=1)), rel=1e-6)
    # against the printed table: each printed value is within 5e-7, a row sum within C times it
    assert abs(total / n - np.mean(np.sum(example.printed_loss, axis=1))) <= 5e-7 * c


@pytest.mark.parametrize("backend", backend_params())
def test_seed_runner_reports_pass(backend):
    result = seed.run(backend)
    assert result.status == "pass", result
    assert result.max_abs_error <= seed.TOLERANCE
    assert result.version


def test_seed_runner_can_fail():
    example = seed.load()
    shifted = seed.WorkedExample(
        example.logits, example.labels, example.printed_loss + 1e-6, example.source
    )
    result = seed.run("numpy", shifted)
    assert result.status == "fail"
    assert result.max_abs_error > seed.TOLERANCE
