#!/usr/bin/env bash
# glyphs-10min shortened for one GPU: 4 trials at a time on 0.25 GPU each, a 90-second trial budget,
# a 7-minute sweep budget; GPU utilisation sampled every 2 s by nvidia-smi into $OUT (or ./gpu-run).
#   bash benchmarks/glyphs_gpu.sh [extra hpsearch run flags]
set -euo pipefail
out="${OUT:-gpu-run}"; mkdir -p "$out"
export HPSEARCH_DATA="${HPSEARCH_DATA:-/tmp/hpsearch-data}"
python3 -c "from trainables.glyphs import glyph_splits; glyph_splits(train_per_class=440, cache_dir='$HPSEARCH_DATA')"
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader -l 2 > "$out/gpu.csv" &
smi=$!
trap 'kill $smi 2>/dev/null || true' EXIT
python3 -m search.commands.cli run glyphs-10min --store /tmp/gpu-store \
  --set budget.trial=90s --set budget.sweep=7m --set report_interval=10s \
  --set pruner.n_warmup_steps=40 --set trials=16 --set concurrency=4 \
  --set resources.gpu=0.25 --set resources.cpu=3 "$@" 2>&1 | tee "$out/sweep.log"
kill $smi || true
python3 - "$out/gpu.csv" <<'PY'
import sys, statistics
rows = [l.split(", ") for l in open(sys.argv[1]) if l.strip()]
util = [float(r[1].split()[0]) for r in rows]
mem = [float(r[2].split()[0]) for r in rows]
busy = [u for u in util if u > 0]
print(f"GPU utilisation over {len(util) * 2}s: mean {statistics.fmean(util):.0f}%, median {statistics.median(util):.0f}%,"
      f" mean while busy {statistics.fmean(busy) if busy else 0:.0f}%; memory used max {max(mem):.0f} MiB")
PY
