#!/bin/bash
# Time `usmlite-edu reproduce --preset cpu` on a GPU machine within a fixed time budget.
#
#   DATA=path/to/fsdd OUT=results/h200_partial LIMIT_S=480 bash benchmarks/time_reproduce_gpu.sh
#
# Runs the reproduction into $WORK (default /tmp/gpu_cpu) for at most $LIMIT_S seconds; a
# second call resumes it (finished rows are skipped). Copies the log, the finished rows and,
# once every row is done, table.md / claims.md / results.json into $OUT.
set -u
DATA=${DATA:-.fsdd}; OUT=${OUT:-results/h200_partial}; LIMIT_S=${LIMIT_S:-480}
WORK=${WORK:-/tmp/gpu_cpu}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
export USMLITE_NO_PROGRESS=1 PYTHONUNBUFFERED=1
t0=$(date +%s)
timeout "$LIMIT_S" python3 -c "import sys; from usmlite_edu.cli import main; sys.exit(main(['reproduce', '--preset', 'cpu', '--corpus', 'fsdd', '--data', '$DATA', '--out', '$WORK']))" 2>&1 \
  | grep -v -E "UserWarning|tok = Tokenizer" | tee -a "$OUT/log.txt"
echo "elapsed $(( $(date +%s) - t0 )) s" | tee -a "$OUT/log.txt"
cp "$WORK"/table.md "$WORK"/claims.md "$WORK"/results.json "$OUT"/ 2>/dev/null
tar czf "$OUT/rows.tgz" -C "$WORK" rows 2>/dev/null
