"""`--qat`: quantization-aware fine-tuning of the distilled student under the teacher, then QDQ ONNX export and an
ONNX Runtime check (int8 kernels used, val metric of the int8 model next to the fp32 student's)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import DistillConfig
from .data import TensorSet
from .qat import ActFakeQuant, calibrate, export_qdq, ort_eval, prepare_qat
from .trainer import Dist, Trainer, predict


def qat_paths(out: Path) -> tuple[Path, Path]:
    return out.with_suffix(".int8.onnx"), out.with_name(out.name + ".qat.state")


def run_qat(student: nn.Module, teacher: nn.Module, train: TensorSet, val: TensorSet, cfg: DistillConfig, *,
            out: Path, device: torch.device, dist: Dist, names: list[str], progress: bool,
            fp32_metric: float) -> dict[str, Any]:
    onnx_path, state_path = qat_paths(out)
    gm = prepare_qat(student.cpu().eval())
    calibrate(gm, train.inputs)
    qcfg = dataclasses.replace(cfg, epochs=cfg.qat_epochs, lr=cfg.qat_lr, warmup_epochs=0, feature_kd=(),
                               qat=False)
    trainer = Trainer(teacher, gm, train, val, qcfg, device=device, dist=dist, state_path=state_path,
                      progress=progress, fingerprint_extra={"qat_of": str(out), "n": train.n})
    outcome = trainer.run()
    gm.load_state_dict(outcome.best_state)
    gm.cpu().eval()
    for m in gm.modules():
        if isinstance(m, ActFakeQuant):
            m.frozen = None
    result: dict[str, Any] = {"onnx": str(onnx_path), "epochs": cfg.qat_epochs,
                              "fake_quant_val_metric": outcome.best_metric, "fp32_val_metric": fp32_metric}
    if dist.main:
        export_qdq(gm, train.inputs, names, onnx_path)
        teacher_val = predict(teacher.cpu(), val, torch.device("cpu"))
        ev = ort_eval(onnx_path, names, val.inputs, val.labels, teacher_val)
        result.update({"metric": ev["metric"], "int8_val_metric": ev["value"], "int8_ops": ev["int8_ops"],
                       "float_matmul_ops": ev["float_convs"],
                       "drop_vs_fp32": fp32_metric - ev["value"]})
    return result
