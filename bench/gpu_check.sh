#!/usr/bin/env bash
# Issue 12's GPU checks in one go, on a machine with CUDA (the results go to OUT, default $OUT or
# /tmp/mer-gpu-check):
#   1. the CUDA tests: Predictor on CUDA, Grad-CAM on CUDA, and CUDA vs CPU on WolfgangLanger
#      (same boxes, max |dp| <= 1e-3);
#   2. bench/batch.py --device cuda: per-stage fps, and the whole `python -m batch` on 3 copies of
#      WolfgangLanger with --device cuda vs --device cpu on the same machine (target >= 8x);
#   3. bench/train.py: seed_cbam 256x256 training samples/s on CUDA vs CPU (target >= 15x).
#
# A machine without this project's packages (e.g. a lent GPU machine with torch only) gets them
# from wheels in .whl/, and the shared media from .media/ (both git-ignored), prepared beside the
# checkout with:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 \
#       --platform any -d .whl facenet-pytorch==2.5.3 decord==0.6.0 plotly openpyxl et_xmlfile
#   cp -r ../shared/media .media
# then, there:  bash bench/gpu_check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/mer-gpu-check}}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/mer-site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/mer-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .media ]; then export MER_MEDIA=$PWD/.media; fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1
status=0
python3 -m pytest -q -p no:cacheprovider tests/test_video.py::test_cuda_gives_the_cpus_numbers \
    tests/test_core_predict.py tests/test_core_gradcam.py 2>&1 | tee "$OUT/tests.log" || status=1
python3 bench/batch.py --device cuda --skip-fer --skip-memory --skip-startup --repeat 1 2>&1 \
    | tee "$OUT/bench_batch.log" || status=1
python3 bench/train.py --device all --models seed_cbam:256 --samples 64 --big-batch 0 2>&1 \
    | tee "$OUT/bench_train.log" || status=1
exit $status
