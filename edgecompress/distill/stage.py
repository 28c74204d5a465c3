"""`distill()`: the stage function — load teacher/student/data, check them, train, write the checkpoint."""

from __future__ import annotations

import copy
import dataclasses
import io
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..artifact import ModelArtifact, StageResult, config_to_dict
from ..errors import ConfigError, ModelError
from ..fsutil import atomic_write_bytes, check_output_path
from .config import DistillConfig
from .data import TensorSet, check_labels, load_train_val, to_tensors
from .models import CHECKPOINT_FORMAT, count_macs, count_params, input_names, load_factory, load_weights
from .trainer import Trainer, metric_of, pick_device, predict, primary, setup_distributed


@dataclass(frozen=True)
class DistillReport:
    teacher: dict[str, Any]
    student: dict[str, Any]
    metric: str
    val_metric: float
    teacher_val_metric: float
    best_epoch: int
    epochs: int
    seconds: float
    data: dict[str, Any]
    outputs: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    qat: dict[str, Any] | None = None
    scratch: dict[str, Any] | None = None  # compare_scratch: the same student on hard labels only, and the gain
    device: str = "cpu"
    world_size: int = 1
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)


def state_path_for(out: Path) -> Path:
    return out.with_name(out.name + ".state")


def distill(config: DistillConfig, *, data, out, val=None, progress: bool = False) -> StageResult:
    """Distill `config.teacher` into a student on `data`; write the student checkpoint to `out` (see docs/distill.md)."""
    if not isinstance(config, DistillConfig):
        raise ConfigError(f"config must be a DistillConfig, got {type(config).__name__}")
    out = check_output_path(out, what="student checkpoint")
    t0 = time.perf_counter()
    cfg = config
    notes: list[str] = []
    det_before = torch.are_deterministic_algorithms_enabled()
    try:
        device = pick_device(cfg.device)
        dist = setup_distributed(device)
        if cfg.deterministic and device.type == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(cfg.seed)

        teacher = load_factory(cfg.teacher, "teacher")
        if cfg.teacher_weights:
            load_weights(teacher, cfg.teacher_weights, "teacher weights")
        else:
            notes.append("no --teacher-weights: the teacher keeps its factory initialisation")
        teacher.eval()
        names = input_names(teacher)

        train_fd, val_fd, split = load_train_val(data, val, seed=cfg.seed, val_fraction=cfg.val_fraction)
        train = to_tensors(train_fd, names, what="training data", max_samples=cfg.max_samples)
        valset = to_tensors(val_fd, names, what="validation data")

        student, derived, definition, student_notes = _make_student(cfg, teacher, train)
        notes.extend(student_notes)
        untrained = copy.deepcopy(student) if cfg.compare_scratch else None  # the scratch run's start
        s_names = input_names(student)
        if len(s_names) != len(names):
            raise ModelError(f"teacher takes inputs {names} but student takes {s_names}; they must take the same "
                             "inputs in the same order")
        if s_names != names:
            notes.append(f"student inputs {s_names} fed positionally from teacher inputs {names}")
        t_out, s_out = _probe(teacher, student, train)
        if cfg.loss == "kd":
            num_classes = cfg.num_classes or int(t_out.shape[-1])
            check_labels(train, num_classes, "training data")
            check_labels(valset, num_classes, "validation data")
            if train.labels is None and cfg.alpha < 1:
                notes.append("training data has no labels: pure soft targets (alpha = 1)")
                cfg = dataclasses.replace(cfg, alpha=1.0)
        elif train.labels is not None:
            notes.append(f"labels are not used by the {cfg.loss} embedding loss")
        if cfg.compare_scratch and (train.labels is None or valset.labels is None):
            raise ConfigError("compare_scratch trains the student on hard labels: the training and validation data "
                              "need a 'labels' key", hint="drop --compare-scratch, or give labelled data")

        t_params, s_params = count_params(teacher), count_params(student)
        t_macs, s_macs = count_macs(teacher, train.inputs), count_macs(student, train.inputs)
        val_teacher = predict(teacher, valset, device if device.type == "cpu" else torch.device("cpu"))
        teacher.cpu()
        metric_name, teacher_metric = metric_of(val_teacher, val_teacher, valset.labels, cfg.loss)

        meta = {"format": CHECKPOINT_FORMAT, "definition": definition, "derived": derived, "input_names": s_names,
                "teacher": cfg.teacher, "config": config_to_dict(cfg)}

        def on_best(state: dict[str, torch.Tensor], metric: float, epoch: int) -> None:
            _save_checkpoint(out, state, {**meta, "metrics": {metric_name: metric, "epoch": epoch}})

        if cfg.resume and not state_path_for(out).is_file():
            notes.append(f"--resume: no {state_path_for(out).name} to resume from; started from epoch 1")
        hashes = {"train": train_fd.content_hash(), "val": val_fd.content_hash()}  # hashed once: both runs use them
        trainer = Trainer(teacher, student, train, valset, cfg, device=device, dist=dist,
                          state_path=state_path_for(out), progress=progress, on_best=on_best,
                          fingerprint_extra={**hashes, "n": train.n})
        outcome = trainer.run()
        student.load_state_dict(outcome.best_state)
        student.cpu().eval()
        metrics = {metric_name: outcome.best_metric, "epoch": outcome.best_epoch,
                   "teacher_" + metric_name: teacher_metric}
        outputs: dict[str, Any] = {"checkpoint": str(out), "state": str(state_path_for(out))}
        if dist.main:
            _save_checkpoint(out, outcome.best_state, {**meta, "metrics": metrics})
            if derived is not None:
                pt2 = _save_pt2(student, train, out, notes)
                if pt2 is not None:
                    outputs["pt2"] = str(pt2)
        scratch = None
        if untrained is not None:  # set exactly when cfg.compare_scratch
            scratch = _scratch_run(cfg, teacher, untrained, train, valset, out=out, device=device, dist=dist,
                                   progress=progress, fingerprint_extra=hashes)
            scratch["kd_gain"] = outcome.best_metric - scratch[metric_name]
        qat_report = None
        if cfg.qat:
            from .qat_stage import run_qat

            qat_report = run_qat(student, teacher, train, valset, cfg, out=out, device=device, dist=dist,
                                 names=s_names, progress=progress, fp32_metric=outcome.best_metric)
            outputs["qat_onnx"] = qat_report["onnx"]
    finally:
        if not det_before:
            torch.use_deterministic_algorithms(False)

    report = DistillReport(
        teacher={"spec": cfg.teacher, "params": t_params, "macs": t_macs, metric_name: teacher_metric},
        student={"definition": definition, "params": s_params, "macs": s_macs, metric_name: outcome.best_metric,
                 "param_ratio": s_params / max(1, t_params), "mac_ratio": s_macs / max(1, t_macs)},
        metric=metric_name, val_metric=outcome.best_metric, teacher_val_metric=teacher_metric,
        best_epoch=outcome.best_epoch, epochs=cfg.epochs, seconds=time.perf_counter() - t0,
        data={"train": train.n, "val": valset.n, "split": split, "train_source": train.source,
              "val_source": valset.source, "labels": train.labels is not None},
        outputs=outputs, history=outcome.history, resumed_from_epoch=outcome.resumed_from, qat=qat_report,
        scratch=scratch,
        device=str(device), world_size=dist.world, notes=notes)
    artifact = ModelArtifact(path=out, format="torch", stage="distill", config=config_to_dict(cfg),
                             metrics={metric_name: outcome.best_metric, "params": s_params, "macs": s_macs})
    return StageResult(artifact, report)


def _scratch_run(cfg: DistillConfig, teacher: nn.Module, student: nn.Module, train: TensorSet, valset: TensorSet,
                 *, out: Path, device, dist, progress: bool, fingerprint_extra: dict[str, Any]) -> dict[str, Any]:
    """The baseline of --compare-scratch: the same student from the same initial weights, with the same budget,
    data, batch order and augmentation, trained on hard labels only (alpha 0, no feature hints); its
    resumable state goes to a temp file beside `out`, removed afterwards."""
    scfg = dataclasses.replace(cfg, alpha=0.0, feature_kd=(), resume=False, compare_scratch=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.scratch-", suffix=".state", dir=out.parent)
    os.close(fd)
    try:
        outcome = Trainer(teacher, student, train, valset, scfg, device=device, dist=dist, state_path=Path(tmp),
                          progress=progress, fingerprint_extra=fingerprint_extra).run()
    finally:
        Path(tmp).unlink(missing_ok=True)
    return {"accuracy": outcome.best_metric, "best_epoch": outcome.best_epoch, "history": outcome.history,
            "seconds": round(outcome.seconds, 2), "alpha": 0.0}


def _make_student(cfg: DistillConfig, teacher: nn.Module, train: TensorSet
                  ) -> tuple[nn.Module, dict[str, Any] | None, str, list[str]]:
    if cfg.student is not None:
        student = load_factory(cfg.student, "student")
        if cfg.student_weights:
            load_weights(student, cfg.student_weights, "student weights")
        return student, None, cfg.student, []
    if cfg.student_from_pruned is not None:
        from .from_pruned import pruned_student

        student, plan, notes = pruned_student(teacher, cfg.student_from_pruned,
                                              {k: v[:64] for k, v in train.inputs.items()})
        derived: dict[str, Any] = {"teacher": cfg.teacher, "teacher_weights": cfg.teacher_weights, "kind": "pruned",
                   "value": cfg.student_from_pruned, "plan": plan}
        return student, derived, f"derived:pruned={cfg.student_from_pruned} of {cfg.teacher}", notes
    from .students import derive_student

    derivation = cfg.derivation
    if derivation is None:  # DistillConfig.validate requires one of the three student sources
        raise ConfigError("give exactly one of student (a SPEC), student_from_teacher (width=F | depth=K) and "
                          "student_from_pruned (a model pruned by `edgecompress prune`)")
    kind, value = derivation
    student, plan = derive_student(teacher, kind, value, {k: v[:2] for k, v in train.inputs.items()})
    derived = {"teacher": cfg.teacher, "teacher_weights": cfg.teacher_weights, "kind": kind, "value": value,
               "plan": plan}
    return student, derived, f"derived:{cfg.student_from_teacher} of {cfg.teacher}", []


def _probe(teacher: nn.Module, student: nn.Module, train: TensorSet) -> tuple[torch.Tensor, torch.Tensor]:
    x = [v[:2] for v in train.inputs.values()]
    with torch.no_grad():
        try:
            t = primary(teacher.eval()(*x))
        except Exception as exc:
            raise ModelError(f"teacher forward failed on the data: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
        was = student.training
        try:
            s = primary(student.eval()(*x))
        except Exception as exc:
            raise ModelError(f"student forward failed on the data: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:200]}") from None
        finally:
            student.train(was)
    if t.shape != s.shape:
        raise ModelError(f"teacher and student output shapes differ: teacher {list(t.shape)}, student "
                         f"{list(s.shape)} (for 2 samples)", hint="the student must predict what the teacher does")
    return t, s


def _save_checkpoint(out: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    # torch.save names the zip's root folder after the file it writes to: save to memory so the bytes do not
    # depend on the temp name (identical runs give identical checkpoints)
    buf = io.BytesIO()
    torch.save({**meta, "state_dict": {k: v.detach().cpu() for k, v in state.items()}}, buf)
    atomic_write_bytes(out, buf.getvalue())


def _save_pt2(student: nn.Module, train: TensorSet, out: Path, notes: list[str]) -> Path | None:
    dest = out.with_suffix(".pt2")
    try:
        args = tuple(v[:2] for v in train.inputs.values())
        try:  # batch axis dynamic where the model allows it
            ep = torch.export.export(student.eval(), args,
                                     dynamic_shapes=tuple({0: torch.export.Dim.AUTO} for _ in args))
        except Exception:
            ep = torch.export.export(student.eval(), tuple(v[:1] for v in args))
        buf = io.BytesIO()
        torch.export.save(ep, buf)
        atomic_write_bytes(dest, buf.getvalue())
    except Exception as exc:  # the checkpoint's plan still rebuilds the student; say why there is no .pt2
        notes.append(f"no {dest.name}: torch.export failed ({type(exc).__name__}); load_student() rebuilds it")
        return None
    return dest
