#!/usr/bin/env bash
# gpu_check.sh -- the trainer's GPU proof on one H100/H200, in one bounded run (adapted from
# ../shared/gpu-check.sh). From the repo root:
#     BUDGET_S=480 bash bench/gpu_check.sh          # results and logs under $OUT (default /tmp/gpu-check)
# 1. environment: torch >= 2.6 with CUDA, FlexAttention, fully_shard; installs only if imports fail
# 2. the CUDA tests (pytest -m cuda tests/test_trainer_cuda.py): FlexAttention and SDPA vs a float64
#    reference in bf16, forward and backward; the large presets' code path under torchrun (meta init,
#    FSDP2 bf16/fp32, flex + compile + full checkpointing + dropout, fused AdamW) with save/resume
# 3. bench/train_mfu.py on the 1B preset (flex = project, sdpa = baseline): tokens/s and MFU
# 4. the CPU trainer tests that need no shared data, if time is left
# Every step has a timeout inside BUDGET_S; the summary at the end lists each step's exit status.
set -o pipefail
START=$(date +%s)
BUDGET_S=${BUDGET_S:-480}
PY=${PY:-python3}
OUTDIR=${OUT:-/tmp/gpu-check}
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TORCHINDUCTOR_CACHE_DIR=$(mktemp -d /tmp/gpu-check-inductor.XXXXXX)
left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
cap() { local want=$1 l; l=$(( $(left) - ${2:-0} )); [ "$l" -lt "$want" ] && want=$l; [ "$want" -lt 1 ] && want=1; echo "$want"; }
RESULT=()

[ -f trainer/train.py ] && [ -f bench/train_mfu.py ] || { echo "FATAL: run from the repo root"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
timeout 90 "$PY" -c "
import torch
print('torch', torch.__version__, 'cuda', torch.version.cuda)
assert torch.cuda.is_available(), 'no CUDA device visible to torch'
assert tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]) >= (2, 6), 'torch >= 2.6 needed'
print(torch.cuda.get_device_name(0), 'sm', torch.cuda.get_device_capability(0))
from torch.nn.attention.flex_attention import flex_attention, create_block_mask
from torch.nn.utils import get_total_norm
from torch.distributed.fsdp import fully_shard, MixedPrecisionPolicy
from torch.distributed.pipelining import PipelineStage, Schedule1F1B
" || { echo "FATAL: torch >= 2.6 with CUDA is needed"; exit 2; }
if ! timeout 90 "$PY" -c "import numpy, pyarrow, yaml, pytest, trainer.train, pipeline.glm_objective"; then
  timeout "$(cap 150)" "$PY" -m pip install -q --retries 0 --timeout 10 -e '.[train]' pytest \
    || timeout "$(cap 90)" "$PY" -m pip install -q --no-deps --no-build-isolation -e . || true
  timeout 90 "$PY" -c "import trainer.train, pipeline.glm_objective" || { echo "FATAL: trainer imports fail"; exit 2; }
fi

# 2. CUDA tests (leave ~250 s for the benchmark)
timeout "$(cap 220 250)" "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_trainer_cuda.py -rA 2>&1 \
  | tee "$OUTDIR/cuda_tests.log"
RESULT+=("cuda tests rc=$?")

# 3. MFU of the 1B preset, seq 2048, bf16; retried smaller and flex only if the first attempt fails
timeout "$(cap 240 15)" "$PY" bench/train_mfu.py --warmup 2 --steps 5 2>&1 | tee "$OUTDIR/bench.log"
rc=$?
RESULT+=("train_mfu rc=$rc")
if [ "$rc" -ne 0 ] && [ "$(left)" -gt 120 ]; then
  timeout "$(cap 200 10)" "$PY" bench/train_mfu.py --attention flex --micro-batch 2 --warmup 2 --steps 4 \
    2>&1 | tee "$OUTDIR/bench_retry.log"
  RESULT+=("train_mfu retry rc=$?")
fi

# 4. CPU tests without shared data, if time is left
if [ "$(left)" -gt 60 ]; then
  timeout "$(cap 120 5)" "$PY" -m pytest -q -p no:cacheprovider tests/test_trainer_architecture.py \
    tests/test_trainer_plan.py 2>&1 | tail -n 5 | tee "$OUTDIR/pytest_cpu.log"
  RESULT+=("cpu tests rc=$?")
fi

echo "================ gpu_check summary ($(( $(date +%s) - START )) s of $BUDGET_S) ================"
printf '%s\n' "${RESULT[@]}"
grep -hE "passed|failed|skipped" "$OUTDIR/cuda_tests.log" | tail -n 3 || true
grep -hE "^device:|MFU|ratio|Error" "$OUTDIR"/bench*.log || echo "no MFU line: see $OUTDIR/bench.log"
