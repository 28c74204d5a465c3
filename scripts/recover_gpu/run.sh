#!/usr/bin/env bash
# On a lent GPU machine (device tool): `prune --target-macs 0.7 --recover` of the zoo MobileNetV2 with
# --device cuda, for a few step counts / learning rates. Needs $OUT and the zoo files in .devrun/mb (model.onnx,
# cal16.npz, eval16.npz: float16 copies of the calibration and the first 32 eval crops, made float32 here).
set -e
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
python3 -c 'import torch, onnxruntime; print("torch", torch.__version__, "ort", onnxruntime.__version__, torch.cuda.get_device_name(0))'
python3 - <<'PY'
import numpy as np
for f in ("cal16", "eval16"):
    d = np.load(f".devrun/mb/{f}.npz")
    np.savez(f"/tmp/{f[:-2]}.npz", **{k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in d.items()})
PY
M=.devrun/mb/model.onnx
i=0
while read -r steps lr syn; do
  [ -z "$steps" ] && continue
  i=$((i+1))
  /usr/bin/time -f "run $i wall %e s" python3 -m edgecompress prune $M --target-macs 0.7 --recover /tmp/cal.npz \
    --calibration /tmp/cal.npz --eval /tmp/eval.npz --max-drop 1 --device cuda --recover-steps $steps \
    --recover-batch-size ${BATCH:-64} --recover-lr $lr --recover-synthetic ${syn:-0.5} --json --out $OUT/r$i.onnx > $OUT/r$i.json || true
  python3 -c "import json; r=json.load(open('$OUT/r$i.json'))['report']; v=r['recovery']; print('run $i steps', v['steps'], 'lr', v['lr'], 'synthetic ${syn:-0.5}', 'batch', v['batch_size'], v['device'], v['seconds'], 's', v['samples_per_s'], 'samples/s loss', v['loss_first'], '->', v['loss_last'], 'eval drop', v['fidelity_before']['drop'], '->', r['fidelity']['drop'])" || tail -5 $OUT/r$i.json
done <<< "${RECOVER_RUNS:-2000 5e-4
2000 1e-3}"
