"""The hostile corpus: every case is built in code, fresh for each run, inside the run's `case/` folder.

A case corrupts one *slot* of a command line (see commands.py): the model file, the feed data, the target profile,
a weights file, a PyTorch factory spec, a recipe, the output location, or a release to verify. `build` returns the
value that replaces the slot's good value. `expect` names commands for which success is legitimate ("any"): there
the promise is only "no traceback, nothing left behind, inputs unchanged".
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .fixtures import World, cnn_graph
from .harness import RunDirs


class Unavailable(Exception):
    """The case cannot be built on this machine (e.g. no permission to mount a tmpfs)."""


@dataclass(frozen=True)
class Case:
    name: str
    slot: str
    build: Callable[[World, RunDirs, str], str]
    expect: dict[str, str] = field(default_factory=dict)  # command -> "any" where success is legitimate
    why: str = ""
    subprocess: bool = False
    fsize_limit: int | None = None
    marker: bool = False  # the case plants code that would create case/MARKER if executed
    kinds: tuple[str, ...] = ("file", "pt", "dir", "csv")  # output kinds an "out" case applies to

    def expectation(self, command: str) -> str:
        return self.expect.get(command, self.expect.get("*", "fail"))


CASES: list[Case] = []


def case(name: str, slot: str, **kw):
    def deco(fn):
        CASES.append(Case(name, slot, fn, **kw))
        return fn
    return deco


def _write(p: Path, data: bytes | str) -> str:
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        p.write_text(data)
    else:
        p.write_bytes(data)
    return str(p)


def _save(m: onnx.ModelProto, p: Path) -> str:
    return _write(p, m.SerializeToString())


# ---------------------------------------------------------------------------------------------- model files
@case("model_empty", "model")
def _(w, rd, kind):
    return _write(rd.case / "model.onnx", b"")


for _frac, _label in ((None, "10_bytes"), (0.5, "half"), (0.9, "90pct")):
    def _trunc(w, rd, kind, frac=_frac):
        data = w.model.read_bytes()
        return _write(rd.case / "model.onnx", data[: 10 if frac is None else int(len(data) * frac)])
    case(f"model_truncated_{_label}", "model")(_trunc)


def _is_broken(data: bytes) -> bool:
    """True if onnx, its checker or ONNX Runtime rejects the bytes (the oracle for bit-flip cases)."""
    try:
        m = onnx.load_from_string(data)
        if not m.graph.node:
            return True
        onnx.checker.check_model(m)
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 4
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])  # prints "EP Error" on junk
    except Exception:
        return True
    return False


_FLIP_CACHE: dict[int, bytes] = {}


def _bitflipped(good: bytes, seed: int) -> bytes:
    """Flip seeded random bits until the model is really broken (flips inside weights keep it valid)."""
    if seed not in _FLIP_CACHE:
        rng = np.random.default_rng(seed)
        data = bytearray(good)
        for _ in range(500):
            pos = int(rng.integers(0, len(data)))
            data[pos] ^= 1 << int(rng.integers(0, 8))
            if _is_broken(bytes(data)):
                break
        _FLIP_CACHE[seed] = bytes(data)
    return _FLIP_CACHE[seed]


for _seed in (1, 2, 3):
    def _flip(w, rd, kind, seed=_seed):
        return _write(rd.case / "model.onnx", _bitflipped(w.model.read_bytes(), seed))
    case(f"model_bitflip_seed{_seed}", "model")(_flip)


@case("model_random_bytes", "model")
def _(w, rd, kind):
    return _write(rd.case / "model.onnx", np.random.default_rng(7).bytes(4096))


@case("model_text_file", "model")
def _(w, rd, kind):
    return _write(rd.case / "model.onnx", "this is not a model\n" * 20)


@case("model_is_tensorproto", "model", why="a valid protobuf of the wrong message type")
def _(w, rd, kind):
    t = numpy_helper.from_array(np.ones((4, 4), np.float32), "t")
    return _write(rd.case / "model.onnx", t.SerializeToString())


@case("model_is_npz", "model")
def _(w, rd, kind):
    return _write(rd.case / "model.onnx", w.calib.read_bytes())


@case("model_missing", "model")
def _(w, rd, kind):
    return str(rd.case / "nope.onnx")


@case("model_is_directory", "model")
def _(w, rd, kind):
    d = rd.case / "model.onnx"
    d.mkdir()
    return str(d)


def _external(rd: RunDirs, location: str, keep_file: bool) -> str:
    m = cnn_graph()
    d = rd.case / "ext"
    d.mkdir()
    onnx.save_model(m, str(d / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="model.data", size_threshold=0)
    if location != "model.data":
        m2 = onnx.load(str(d / "model.onnx"), load_external_data=False)
        for t in m2.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        (d / "model.onnx").write_bytes(m2.SerializeToString())
    if not keep_file:
        (d / "model.data").unlink()
    return str(d / "model.onnx")


@case("model_external_data_missing", "model")
def _(w, rd, kind):
    return _external(rd, "model.data", keep_file=False)


@case("model_external_data_escapes", "model", why="external data location '../secret.bin' outside the model folder")
def _(w, rd, kind):
    _write(rd.case / "secret.bin", b"\0" * 4096)
    return _external(rd, "../secret.bin", keep_file=True)


@case("model_opset_6", "model", expect={"inspect": "any"})
def _(w, rd, kind):
    return _save(cnn_graph(opset=6, ir_version=3), rd.case / "model.onnx")


@case("model_opset_99", "model", expect={"inspect": "any"},
      why="the ONNX checker accepts an opset from the future; inspect reads the graph, every runtime stage fails")
def _(w, rd, kind):
    return _save(cnn_graph(opset=99), rd.case / "model.onnx")


@case("model_ir_version_99", "model")
def _(w, rd, kind):
    return _save(cnn_graph(ir_version=99), rd.case / "model.onnx")


@case("model_custom_domain_op", "model", expect={"inspect": "any"})
def _(w, rd, kind):
    m = cnn_graph()
    relu = next(n for n in m.graph.node if n.name == "relu1")
    relu.op_type, relu.domain = "Frobnicate", "com.acme.secret"
    m.opset_import.append(helper.make_opsetid("com.acme.secret", 1))
    return _save(m, rd.case / "model.onnx")


@case("model_dynamic_dims_everywhere", "model", expect={"*": "any"},
      why="every input/output dim symbolic (N, C, H, W): legitimate, must not crash")
def _(w, rd, kind):
    return _save(cnn_graph(dim_params=True), rd.case / "model.onnx")


@case("model_zero_size_tensor", "model", expect={"*": "any"},
      why="a zero-size initializer feeding a Concat: legitimate ONNX, must not crash")
def _(w, rd, kind):
    m = cnn_graph()
    m.graph.initializer.append(numpy_helper.from_array(np.zeros((1, 0), np.float32), "empty"))
    fc = next(n for n in m.graph.node if n.name == "fc")
    fc.output[0] = "logits_pre"
    m.graph.node.append(helper.make_node("Concat", ["logits_pre", "empty"], ["logits"], name="cat", axis=1))
    return _save(m, rd.case / "model.onnx")


@case("model_zero_size_input", "model", expect={"inspect": "any"}, why="input shape [0, 1, 28, 28]")
def _(w, rd, kind):
    return _save(cnn_graph(in_shape=(0, 1, 28, 28)), rd.case / "model.onnx")


@case("model_in_read_only_folder", "model", expect={"*": "any"},
      why="a good model in a read-only folder: stages must not write beside their input")
def _(w, rd, kind):
    d = rd.case / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        _write(d / "model.onnx", w.model.read_bytes())
        d.chmod(0o555)
        rd.cleanups.append(lambda: d.chmod(0o755))
        return str(d / "model.onnx")
    _mount_tmpfs(d, rd, size="1m")
    _write(d / "model.onnx", w.model.read_bytes())
    res = subprocess.run(["mount", "-o", "remount,ro", str(d)], capture_output=True, timeout=20)
    if res.returncode != 0:
        raise Unavailable("cannot remount the tmpfs read-only")
    return str(d / "model.onnx")


@case("model_empty_graph", "model")
def _(w, rd, kind):
    g = helper.make_graph([], "empty", [], [])
    return _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), rd.case / "model.onnx")


@case("model_dangling_input", "model", why="a node reads a value nothing produces (fails the checker)")
def _(w, rd, kind):
    m = cnn_graph()
    m.graph.node[2].input[0] = "does_not_exist"
    return _save(m, rd.case / "model.onnx")


@case("model_is_torch_checkpoint", "model")
def _(w, rd, kind):
    return _write(rd.case / "model.onnx", w.weights.read_bytes())


# ---------------------------------------------------------------------------------------------- feed data
def _mnist(n: int = 8) -> np.ndarray:
    return np.random.default_rng(0).random((n, 1, 28, 28), dtype=np.float32)


def _npz(rd: RunDirs, name: str = "data.npz", **arrays) -> str:
    p = rd.case / name
    p.parent.mkdir(parents=True, exist_ok=True)
    np.savez(p, **arrays)
    return str(p)


_LAB = np.arange(8, dtype=np.int64) % 10


@case("data_extra_input_name", "data", why="keys input + extra for a one-input model")
def _(w, rd, kind):
    return _npz(rd, input=_mnist(), extra=_mnist(), labels=_LAB)


@case("data_wrong_rank", "data")
def _(w, rd, kind):
    return _npz(rd, input=_mnist()[:, 0], labels=_LAB)


@case("data_wrong_dims", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.zeros((8, 1, 32, 32), np.float32), labels=_LAB)


@case("data_int_dtype", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.ones((8, 1, 28, 28), np.int64), labels=_LAB)


@case("data_string_dtype", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.full((8, 1, 28, 28), "x"), labels=_LAB)


@case("data_bool_dtype", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.ones((8, 1, 28, 28), bool), labels=_LAB)


@case("data_complex_dtype", "data")
def _(w, rd, kind):
    return _npz(rd, input=_mnist().astype(np.complex64), labels=_LAB)


@case("data_nan", "data")
def _(w, rd, kind):
    a = _mnist()
    a[3, 0, 5, 5] = np.nan
    return _npz(rd, input=a, labels=_LAB)


@case("data_inf", "data")
def _(w, rd, kind):
    a = _mnist()
    a[7, 0, 0, 0] = -np.inf
    return _npz(rd, input=a, labels=_LAB)


@case("data_empty", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.zeros((0, 1, 28, 28), np.float32), labels=np.zeros((0,), np.int64))


@case("data_labels_wrong_length", "data")
def _(w, rd, kind):
    return _npz(rd, input=_mnist(), labels=np.arange(3, dtype=np.int64))


@case("data_labels_out_of_range", "data", expect={"*": "any"}, why="only distill uses labels as classes")
def _(w, rd, kind):
    return _npz(rd, input=_mnist(), labels=np.full(8, 1000, np.int64))


@case("data_object_array_pickle", "data", why="an object array inside the .npz (a pickle)")
def _(w, rd, kind):
    p = rd.case / "data.npz"
    np.savez(p, input=np.array([{"a": 1}] * 8, dtype=object), labels=_LAB)
    return str(p)


@case("data_corrupt_npz", "data")
def _(w, rd, kind):
    return _write(rd.case / "data.npz", w.calib.read_bytes()[:300])


@case("data_not_npz", "data")
def _(w, rd, kind):
    return _write(rd.case / "data.csv", "1,2,3\n")


@case("data_missing", "data")
def _(w, rd, kind):
    return str(rd.case / "nope.npz")


@case("data_empty_folder", "data")
def _(w, rd, kind):
    (rd.case / "feeds").mkdir()
    return str(rd.case / "feeds")


@case("data_folder_mixed_keys", "data", expect={"distill": "any"},
      why="one key per file, but not the same key: single-input torch models take the one key (data.py)")
def _(w, rd, kind):
    _npz(rd, "feeds/000.npz", input=_mnist(1), labels=np.array([1]))
    _npz(rd, "feeds/001.npz", other=_mnist(1), labels=np.array([2]))
    return str(rd.case / "feeds")


@case("data_scalar_key", "data")
def _(w, rd, kind):
    return _npz(rd, input=np.float32(1.0))


@case("data_entry_point_raises", "data", why="a module:function data source whose function raises")
def _(w, rd, kind):
    _write(rd.case / "feeds.py", "def feeds():\n    raise RuntimeError('user code failed')\n")
    return f"{rd.case / 'feeds.py'}:feeds"


@case("data_entry_point_yields_junk", "data", why="a data entry point yielding non-dicts")
def _(w, rd, kind):
    _write(rd.case / "feeds.py", "def feeds():\n    return [1, 2, 3]\n")
    return f"{rd.case / 'feeds.py'}:feeds"


# ---------------------------------------------------------------------------------------------- target profiles
_GOOD_TOML = 'name = "t"\narch = "x86_64"\nexecution_providers = ["CPUExecutionProvider"]\n'


def _toml(rd: RunDirs, text: str | bytes) -> str:
    return _write(rd.case / "target.toml", text)


@case("target_malformed_toml", "target")
def _(w, rd, kind):
    return _toml(rd, 'name = "t"\n[quantization\nformat = qdq\n')


@case("target_unknown_key", "target")
def _(w, rd, kind):
    return _toml(rd, _GOOD_TOML + "turbo = true\n")


@case("target_wrong_type", "target")
def _(w, rd, kind):
    return _toml(rd, _GOOD_TOML + 'threads = "four"\n')


@case("target_bad_arch", "target")
def _(w, rd, kind):
    return _toml(rd, 'name = "t"\narch = "sparc"\n')


@case("target_missing_name", "target")
def _(w, rd, kind):
    return _toml(rd, 'arch = "x86_64"\n')


@case("target_unknown_name", "target")
def _(w, rd, kind):
    return "no-such-target-profile"


@case("target_missing_path", "target")
def _(w, rd, kind):
    return str(rd.case / "nope.toml")


@case("target_binary", "target")
def _(w, rd, kind):
    return _toml(rd, b"\xff\xfe\x00garbage\x80")


@case("target_opset_inverted", "target")
def _(w, rd, kind):
    return _toml(rd, _GOOD_TOML + "[opset]\nmin = 20\nmax = 13\n")


@case("target_negative_budget", "target")
def _(w, rd, kind):
    return _toml(rd, _GOOD_TOML + "[budgets]\nmax_size_mb = -1\n")


@case("target_unknown_ep", "target")
def _(w, rd, kind):
    return _toml(rd, 'name = "t"\nexecution_providers = ["WarpDriveExecutionProvider"]\n')


@case("target_table_not_table", "target")
def _(w, rd, kind):
    return _toml(rd, _GOOD_TOML + "quantization = 3\n")


# ---------------------------------------------------------------------------------------------- weights files
class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@case("weights_pickle_with_code", "weights", marker=True, why="a plain pickle whose __reduce__ runs os.system")
def _(w, rd, kind):
    return _write(rd.case / "w.pt", pickle.dumps({"0.weight": _Exploit(str(rd.case / "MARKER"))}))


@case("weights_torch_zip_with_code", "weights", marker=True,
      why="a torch.save zip whose data.pkl carries a __reduce__ payload")
def _(w, rd, kind):
    import torch

    p = rd.case / "w.pt"
    torch.save({"0.weight": _Exploit(str(rd.case / "MARKER"))}, p)
    return str(p)


@case("weights_truncated", "weights")
def _(w, rd, kind):
    data = w.weights.read_bytes()
    return _write(rd.case / "w.pt", data[: len(data) // 2])


@case("weights_random_bytes", "weights")
def _(w, rd, kind):
    return _write(rd.case / "w.pt", np.random.default_rng(3).bytes(2048))


@case("weights_empty", "weights")
def _(w, rd, kind):
    return _write(rd.case / "w.pt", b"")


@case("weights_wrong_keys", "weights")
def _(w, rd, kind):
    import torch

    p = rd.case / "w.pt"
    torch.save({"encoder.weight": torch.zeros(3)}, p)
    return str(p)


@case("weights_wrong_shapes", "weights")
def _(w, rd, kind):
    import torch

    sd = torch.load(w.weights, weights_only=True)
    sd = {k: torch.zeros(*(s + 1 for s in v.shape)) for k, v in sd.items()}
    p = rd.case / "w.pt"
    torch.save(sd, p)
    return str(p)


@case("weights_missing", "weights")
def _(w, rd, kind):
    return str(rd.case / "nope.pt")


# ---------------------------------------------------------------------------------------------- factory specs
@case("factory_file_missing", "factory")
def _(w, rd, kind):
    return f"{rd.case / 'nope.py'}:tiny"


@case("factory_no_such_function", "factory")
def _(w, rd, kind):
    return f"{w.nets}:does_not_exist"


@case("factory_raises", "factory")
def _(w, rd, kind):
    _write(rd.case / "f.py", "def tiny():\n    raise ValueError('broken factory')\n")
    return f"{rd.case / 'f.py'}:tiny"


@case("factory_syntax_error", "factory")
def _(w, rd, kind):
    _write(rd.case / "f.py", "def tiny(:\n    pass\n")
    return f"{rd.case / 'f.py'}:tiny"


@case("factory_returns_non_module", "factory")
def _(w, rd, kind):
    _write(rd.case / "f.py", "def tiny():\n    return 42\n")
    return f"{rd.case / 'f.py'}:tiny"


@case("factory_bad_spec", "factory")
def _(w, rd, kind):
    return "just-some-words"


@case("factory_import_error", "factory")
def _(w, rd, kind):
    _write(rd.case / "f.py", "import no_such_module_xyz\ndef tiny():\n    pass\n")
    return f"{rd.case / 'f.py'}:tiny"


# ---------------------------------------------------------------------------------------------- export --input specs
for _name, _spec in (("no_shape", "input"), ("bad_dim", "input:1xAx28!x28"), ("zero_dim", "input:0x1x28x28"),
                     ("unknown_dtype", "input:1x1x28x28:float99"), ("wrong_rank", "input:1x28x28"),
                     ("wrong_dims", "input:1x1x32x32"), ("empty_name", ":1x1x28x28")):
    case(f"inputspec_{_name}", "inputspec")(lambda w, rd, kind, spec=_spec: spec)


# ---------------------------------------------------------------------------------------------- recipes
def good_recipe_text(w: World, *, extra: str = "", model: str | None = None) -> str:
    return (f'[model]\nsource = "{model or w.model}"\n\n[data]\ncalibration = "{w.calib}"\neval = "{w.eval}"\n\n'
            f"[quantize]\nallow_slower = true\n\n[package]\n{extra}")


def _recipe(rd: RunDirs, text: str | bytes) -> str:
    return _write(rd.case / "recipe.toml", text)


@case("recipe_malformed_toml", "recipe")
def _(w, rd, kind):
    return _recipe(rd, "[model\nsource = 3\n")


@case("recipe_unknown_top_key", "recipe")
def _(w, rd, kind):
    return _recipe(rd, good_recipe_text(w) + "\n[turbo]\nlevel = 11\n")


@case("recipe_unknown_stage_key", "recipe")
def _(w, rd, kind):
    return _recipe(rd, good_recipe_text(w).replace("[quantize]\n", "[quantize]\nwarp_factor = 9\n"))


@case("recipe_wrong_type", "recipe")
def _(w, rd, kind):
    return _recipe(rd, good_recipe_text(w).replace("[quantize]\n", '[quantize]\nper_channel = "yes please"\n'))


@case("recipe_stage_not_table", "recipe")
def _(w, rd, kind):
    return _recipe(rd, 'quantize = 3\n' + good_recipe_text(w).replace("[quantize]\nallow_slower = true\n", ""))


@case("recipe_missing_model_file", "recipe")
def _(w, rd, kind):
    return _recipe(rd, good_recipe_text(w, model=str(rd.case / "nope.onnx")))


@case("recipe_unknown_target", "recipe")
def _(w, rd, kind):
    return _recipe(rd, 'target = "no-such-target"\n' + good_recipe_text(w))


@case("recipe_empty", "recipe")
def _(w, rd, kind):
    return _recipe(rd, "")


@case("recipe_binary", "recipe")
def _(w, rd, kind):
    return _recipe(rd, b"\x89PNG\r\n\x1a\n\x00\x00\xff")


@case("recipe_missing", "recipe")
def _(w, rd, kind):
    return str(rd.case / "nope.toml")


@case("recipe_corrupt_model", "recipe", why="a recipe pointing at a truncated .onnx")
def _(w, rd, kind):
    _write(rd.case / "bad.onnx", w.model.read_bytes()[:100])
    return _recipe(rd, good_recipe_text(w, model=str(rd.case / "bad.onnx")))


@case("recipe_nan_calibration", "recipe", why="a recipe whose calibration data holds NaN")
def _(w, rd, kind):
    a = _mnist()
    a[0, 0, 0, 0] = np.nan
    np.savez(rd.case / "nan.npz", input=a, labels=_LAB)
    return _recipe(rd, good_recipe_text(w).replace(str(w.calib), str(rd.case / "nan.npz")))


# ---------------------------------------------------------------------------------------------- output locations
def _mount_tmpfs(path: Path, rd: RunDirs, *, size: str, ro: bool = False) -> None:
    opts = f"size={size},mode=0755" + (",ro" if ro else "")
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"cannot mount a tmpfs: {exc}") from None
    if res.returncode != 0:
        raise Unavailable(f"cannot mount a tmpfs: {res.stderr.decode(errors='replace').strip()}")
    rd.cleanups.append(lambda: subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=20))


def _out_name(kind: str) -> str:
    return {"file": "model.onnx", "pt": "student.pt", "csv": "bench.csv"}.get(kind, "release")


@case("out_is_existing_directory", "out", kinds=("file", "pt", "csv"), why="the output file name is an existing folder")
def _(w, rd, kind):
    d = rd.out / _out_name(kind)
    d.mkdir()
    _write(d / "keep.txt", "keep me")
    return str(d)


@case("out_is_existing_file", "out", kinds=("dir",), why="the output folder name is an existing file")
def _(w, rd, kind):
    return _write(rd.out / "release", "I am a file")


@case("out_parent_missing", "out", kinds=("file", "pt", "csv"), why="folder outputs may create missing parents")
def _(w, rd, kind):
    return str(rd.out / "no" / "such" / _out_name(kind))


@case("out_parent_is_file", "out")
def _(w, rd, kind):
    _write(rd.out / "afile", "x")
    return str(rd.out / "afile" / _out_name(kind))


@case("out_read_only_folder", "out")
def _(w, rd, kind):
    d = rd.out / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        _mount_tmpfs(d, rd, size="1m", ro=True)
    else:
        d.chmod(0o555)
        rd.cleanups.append(lambda: d.chmod(0o755))
    return str(d / _out_name(kind))


@case("out_full_disk", "out", why="the output folder is a tmpfs filled to the last byte")
def _(w, rd, kind):
    d = rd.out / "full"
    d.mkdir()
    _mount_tmpfs(d, rd, size="256k")
    try:
        with open(d / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    return str(d / _out_name(kind))


@case("out_file_size_limit", "out", subprocess=True, fsize_limit=2048, kinds=("file", "pt", "dir"),
      why="RLIMIT_FSIZE 2 KiB on the process (writes beyond it fail with EFBIG)")
def _(w, rd, kind):
    return str(rd.out / _out_name(kind))


# ---------------------------------------------------------------------------------------------- releases for verify
def _tar(rd: RunDirs, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> str:
    p = rd.case / "release.tar.gz"
    with tarfile.open(p, "w:gz") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return str(p)


def _member(name: str, data: bytes = b"x", **kw) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    if info.type == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


@case("release_missing", "release")
def _(w, rd, kind):
    return str(rd.case / "nope")


@case("release_empty_folder", "release")
def _(w, rd, kind):
    (rd.case / "release").mkdir()
    return str(rd.case / "release")


@case("release_folder_without_manifest", "release")
def _(w, rd, kind):
    _write(rd.case / "release" / "model.onnx", w.model.read_bytes())
    return str(rd.case / "release")


@case("release_manifest_garbage", "release")
def _(w, rd, kind):
    _write(rd.case / "release" / "model.onnx", w.model.read_bytes())
    _write(rd.case / "release" / "manifest.json", "{not json")
    return str(rd.case / "release")


@case("release_tar_random_bytes", "release")
def _(w, rd, kind):
    return _write(rd.case / "release.tar.gz", np.random.default_rng(5).bytes(3000))


@case("release_tar_empty_file", "release")
def _(w, rd, kind):
    return _write(rd.case / "release.tar.gz", b"")


@case("release_tar_dotdot_entry", "release", why="a tarball entry '../escape.txt'")
def _(w, rd, kind):
    return _tar(rd, [_member("release/manifest.json", b"{}"), _member("../escape.txt", b"pwned")])


@case("release_tar_absolute_entry", "release")
def _(w, rd, kind):
    return _tar(rd, [_member("release/manifest.json", b"{}"), _member(str(rd.case / "abs_escape.txt"), b"pwned")])


@case("release_tar_symlink_entry", "release")
def _(w, rd, kind):
    return _tar(rd, [_member("release/manifest.json", b"{}"),
                     _member("release/model.onnx", type=tarfile.SYMTYPE, linkname="/etc/passwd")])


@case("release_tar_device_entry", "release")
def _(w, rd, kind):
    return _tar(rd, [_member("release/manifest.json", b"{}"),
                     _member("release/model.onnx", type=tarfile.CHRTYPE, devmajor=1, devminor=3)])


def by_slot(slot: str) -> list[Case]:
    return [c for c in CASES if c.slot == slot]


def case_names() -> list[str]:
    return [c.name for c in CASES]


assert len(set(case_names())) == len(CASES), "duplicate case names"
