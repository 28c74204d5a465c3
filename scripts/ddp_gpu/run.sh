#!/usr/bin/env bash
# On a lent GPU machine (device tool): train the MNIST teacher, then distill the same student twice as one
# process and under torchrun (NCCL), printing val metric, seconds and world size. Needs $OUT.
set -e
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 -c 'import torch;print("torch", torch.__version__, "gpus", torch.cuda.device_count(), torch.cuda.get_device_name(0))'
nvidia-smi -L
python3 scripts/ddp_gpu/train_teacher.py $OUT/teacher.pt
D=calibration_data
common="--teacher examples/mnist_models.py:teacher --teacher-weights $OUT/teacher.pt --student examples/mnist_models.py:student_small --data $D/mnist_train.npz --val $D/mnist_val.npz --epochs 20 --device cuda --json"
for run in 1 2; do
  /usr/bin/time -f "single wall %e s" python3 -m edgecompress distill $common --out /tmp/single$run.pt > $OUT/single$run.json
  /usr/bin/time -f "torchrun1 wall %e s" torchrun --nproc-per-node 1 -m edgecompress distill $common --out /tmp/ddp$run.pt > $OUT/ddp1_$run.json
done
python3 - <<'PY'
import json, os
out = os.environ["OUT"]
for f in sorted(os.listdir(out)):
    if f.endswith(".json"):
        r = json.load(open(os.path.join(out, f)))["report"]
        n = r["data"]["train"] * r["epochs"]
        print(f, "world", r["world_size"], r["device"], "val", round(r["val_metric"], 4), "teacher",
              round(r["teacher_val_metric"], 4), f"{r['seconds']:.2f} s", f"{n / r['seconds']:.0f} samples/s")
PY
