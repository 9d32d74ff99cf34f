#!/usr/bin/env bash
# The GPU checks, on a machine with a CUDA GPU and its own torch / JAX (no network needed):
# the conformance suite's CUDA cells, the tests' CUDA cases, and `mlloss bench --device cuda`.
#   bash benchmarks/gpu.sh OUT_DIR [conform|test|bench]...   (default: all three)
# Run from the repository root. Writes conform.log/.json, test.log, bench.log/.json to OUT_DIR.
set -u
out=${1:?usage: benchmarks/gpu.sh OUT_DIR [conform|test|bench]...}
shift
steps=${*:-conform test bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
python=${PYTHON:-python3}
nvidia-smi -L
$python -c "import torch, jax; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('jax', jax.__version__, jax.devices())"
$python -c "import mlloss.backends" 2>/dev/null ||
    $python -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
for step in $steps; do
    case $step in
    conform)
        $python -m mlloss conform --device cuda --backend torch --backend jax \
            --backend native:torch --backend native:torchvision --backend native:optax \
            --workers 3 --json "$out/conform.json" >"$out/conform.log" 2>&1
        echo "conform exit $?"
        tail -n 60 "$out/conform.log"
        ;;
    test)
        $python -m pytest -q -p no:cacheprovider -k cuda tests/test_loss.py tests/test_bench.py \
            >"$out/test.log" 2>&1
        echo "test exit $?"
        tail -n 15 "$out/test.log"
        ;;
    bench)
        # multilabel_hinge is pairwise (N x C x C): left out at these sizes
        losses=$($python -c "import mlloss; print(' '.join('--loss ' + n for n in mlloss.names() if n != 'multilabel_hinge'))")
        $python -m mlloss bench --device cuda --backend torch --backend jax $losses \
            --shape 4096x1000 --shape 64x80 --repeat 21 --json "$out/bench.json" >"$out/bench.log" 2>&1
        echo "bench exit $?"
        tail -n 200 "$out/bench.log"
        ;;
    *) echo "unknown step $step"; exit 2 ;;
    esac
done
