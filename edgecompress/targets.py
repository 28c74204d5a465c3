"""Target profiles: what a deployment target runs and what it prefers.

A profile is a TOML file (`targets/<name>.toml`, or any path) parsed into a frozen `TargetProfile`.
`host` is a pseudo-target describing the machine edgecompress runs on (ISA features detected at run time).
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import TargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ARCHES = ("x86_64", "arm64")
ISA_FEATURES = ("sse4_2", "avx2", "avx512", "avx512_vnni", "avx_vnni", "amx", "neon", "neon_dotprod", "i8mm", "fp16")
KNOWN_EPS = (
    "CPUExecutionProvider",
    "XnnpackExecutionProvider",
    "NnapiExecutionProvider",
    "CoreMLExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "QNNExecutionProvider",
    "DnnlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
QUANT_FORMATS = ("qdq", "qoperator")
QTYPES = ("uint8", "int8")
OPT_STYLES = ("Fixed", "Runtime")
GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")


def targets_dir() -> Path:
    """The folder of shipped profiles: `targets/` beside the package (source checkout) or inside it."""
    env = os.environ.get("EDGECOMPRESS_TARGETS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "targets", here / "targets"):
        if cand.is_dir():
            return cand
    return here.parent / "targets"


@dataclass(frozen=True)
class QuantPrefs:
    format: str = "qdq"
    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    reduce_range: bool = False

    def __post_init__(self) -> None:
        _one_of("quantization.format", self.format, QUANT_FORMATS)
        _one_of("quantization.activation_type", self.activation_type, QTYPES)
        _one_of("quantization.weight_type", self.weight_type, QTYPES)
        _is_bool("quantization.per_channel", self.per_channel)
        _is_bool("quantization.reduce_range", self.reduce_range)


@dataclass(frozen=True)
class Budgets:
    max_size_mb: float | None = None
    max_p90_latency_ms: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_size_mb", "max_p90_latency_ms", "max_accuracy_drop"):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise TargetError(f"budgets.{name} must be a positive number, got {v!r}")
        if self.max_accuracy_drop is not None and self.max_accuracy_drop >= 1:
            raise TargetError(f"budgets.max_accuracy_drop is a fraction in (0, 1), got {self.max_accuracy_drop!r}")


@dataclass(frozen=True)
class TargetProfile:
    name: str
    description: str = ""
    arch: str = "x86_64"
    isa: tuple[str, ...] = ()
    execution_providers: tuple[str, ...] = ("CPUExecutionProvider",)
    threads: int = 1
    graph_optimization: str = "all"
    quantization: QuantPrefs = field(default_factory=QuantPrefs)
    opset_min: int = 13
    opset_max: int = 21
    operators: tuple[str, ...] = ()
    round_to: int = 8
    ort_optimization_style: str = "Fixed"
    budgets: Budgets = field(default_factory=Budgets)
    source: str = ""
    is_host: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TargetError("name must be a non-empty string")
        _one_of("arch", self.arch, ARCHES)
        for f in self.isa:
            _one_of("isa", f, ISA_FEATURES)
        if not self.execution_providers:
            raise TargetError("execution_providers must list at least one provider")
        for ep in self.execution_providers:
            _one_of("execution_providers", ep, KNOWN_EPS)
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= 256:
            raise TargetError(f"threads must be an integer in 0..256 (0 = all cores), got {self.threads!r}")
        _one_of("graph_optimization", self.graph_optimization, GRAPH_OPT_LEVELS)
        for name in ("opset_min", "opset_max"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 7 <= v <= 30:
                raise TargetError(f"opset.{name.split('_')[1]} must be an integer in 7..30, got {v!r}")
        if self.opset_min > self.opset_max:
            raise TargetError(f"opset.min ({self.opset_min}) is greater than opset.max ({self.opset_max})")
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or not 1 <= self.round_to <= 256:
            raise TargetError(f"pruning.round_to must be an integer in 1..256, got {self.round_to!r}")
        _one_of("package.ort_optimization_style", self.ort_optimization_style, OPT_STYLES)

    @property
    def mobile_ep(self) -> str | None:
        for ep in self.execution_providers:
            if ep in ("NnapiExecutionProvider", "CoreMLExecutionProvider"):
                return ep
        return None

    def to_dict(self) -> dict[str, Any]:
        from .artifact import config_to_dict

        return config_to_dict(self)


def _one_of(field_name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TargetError(f"{field_name} must be one of {', '.join(allowed)}; got {value!r}")


def _is_bool(field_name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TargetError(f"{field_name} must be true or false, got {value!r}")


_TOP_KEYS = {
    "name", "description", "arch", "isa", "execution_providers", "threads", "graph_optimization",
    "quantization", "opset", "operators", "pruning", "package", "budgets", "source",
}
_SUB_KEYS = {
    "quantization": {"format", "activation_type", "weight_type", "per_channel", "reduce_range"},
    "opset": {"min", "max"},
    "pruning": {"round_to"},
    "package": {"ort_optimization_style"},
    "budgets": {"max_size_mb", "max_p90_latency_ms", "max_accuracy_drop"},
}


def profile_from_dict(data: dict[str, Any], *, origin: str = "<dict>") -> TargetProfile:
    """Build a validated profile from parsed TOML; errors name the file and the field."""
    try:
        return _profile_from_dict(data)
    except TargetError as exc:
        raise TargetError(f"{origin}: {exc.message}", hint=exc.hint) from None


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    t = data.get(key, {})
    if not isinstance(t, dict):
        raise TargetError(f"[{key}] must be a table, got {type(t).__name__}")
    unknown = set(t) - _SUB_KEYS[key]
    if unknown:
        raise TargetError(f"unknown key {key}.{sorted(unknown)[0]}; allowed: {', '.join(sorted(_SUB_KEYS[key]))}")
    return t


def _str_list(data: dict[str, Any], key: str) -> tuple[str, ...]:
    v = data.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TargetError(f"{key} must be a list of strings, got {v!r}")
    return tuple(v)


def _profile_from_dict(data: dict[str, Any]) -> TargetProfile:
    if not isinstance(data, dict):
        raise TargetError("a target profile must be a TOML table")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise TargetError(f"unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_TOP_KEYS))}")
    if "name" not in data:
        raise TargetError("missing required key 'name'")
    for key in ("name", "description", "arch", "graph_optimization", "source"):
        if key in data and not isinstance(data[key], str):
            raise TargetError(f"{key} must be a string, got {data[key]!r}")
    q = _table(data, "quantization")
    opset = _table(data, "opset")
    pruning = _table(data, "pruning")
    package = _table(data, "package")
    budgets = _table(data, "budgets")
    defaults = TargetProfile(name="_defaults")
    return TargetProfile(
        name=data["name"],
        description=data.get("description", ""),
        arch=data.get("arch", "x86_64"),
        isa=_str_list(data, "isa"),
        execution_providers=_str_list(data, "execution_providers") or ("CPUExecutionProvider",),
        threads=data.get("threads", 1),
        graph_optimization=data.get("graph_optimization", "all"),
        quantization=QuantPrefs(**q),
        opset_min=opset.get("min", defaults.opset_min),
        opset_max=opset.get("max", defaults.opset_max),
        operators=_str_list(data, "operators"),
        round_to=pruning.get("round_to", defaults.round_to),
        ort_optimization_style=package.get("ort_optimization_style", "Fixed"),
        budgets=Budgets(**budgets),
        source=data.get("source", ""),
    )


def load_profile_file(path: str | os.PathLike[str]) -> TargetProfile:
    p = Path(path)
    if not p.is_file():
        raise TargetError(f"target profile not found: {p}")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise TargetError(f"{p}: not a UTF-8 text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(f"{p}: malformed TOML: {exc}") from None
    return profile_from_dict(data, origin=str(p))


def list_targets() -> list[TargetProfile]:
    """The shipped profiles plus `host`, sorted by name. Malformed shipped files raise."""
    out = [host_profile()]
    folder = targets_dir()
    if folder.is_dir():
        out += [load_profile_file(p) for p in sorted(folder.glob("*.toml"))]
    return out


def get_target(spec: str | os.PathLike[str] | TargetProfile | None) -> TargetProfile:
    """Resolve `--target`: None or 'host' -> the host; a name in targets/; or a path to a .toml file."""
    if isinstance(spec, TargetProfile):
        return spec
    if spec is None or str(spec) == "host":
        return host_profile()
    s = str(spec)
    if s.endswith(".toml") or os.sep in s:
        return load_profile_file(s)
    cand = targets_dir() / f"{s}.toml"
    if cand.is_file():
        return load_profile_file(cand)
    names = ["host"] + sorted(p.stem for p in targets_dir().glob("*.toml"))
    raise TargetError(f"unknown target {s!r}; known: {', '.join(names)}")


def detect_isa() -> tuple[str, tuple[str, ...]]:
    """(arch, ISA features) of this machine, read from /proc/cpuinfo where present."""
    machine = platform.machine().lower()
    arch = "arm64" if machine in ("aarch64", "arm64") else "x86_64"
    flags: set[str] = set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            flags.update(line.split(":", 1)[1].split())
            break
    feats: list[str] = []
    if arch == "x86_64":
        mapping = [("sse4_2", "sse4_2"), ("avx2", "avx2"), ("avx512f", "avx512"), ("avx512_vnni", "avx512_vnni"),
                   ("avx_vnni", "avx_vnni"), ("amx_int8", "amx")]
    else:
        mapping = [("asimd", "neon"), ("asimddp", "neon_dotprod"), ("i8mm", "i8mm"), ("asimdhp", "fp16")]
    for flag, name in mapping:
        if flag in flags:
            feats.append(name)
    if arch == "arm64" and "neon" not in feats:
        feats.insert(0, "neon")
    return arch, tuple(feats)


def host_profile() -> TargetProfile:
    """The machine edgecompress runs on. Quantization preferences follow measurements on ORT's CPU EP:

    x86-64: uint8 activations + int8 weights (U8S8) QDQ; measured here on ResNet-18 static int8, one thread:
    3.41x faster than fp32 with uint8 activations vs 1.32x with int8 activations (ORT's default S8S8).
    Without VNNI, reduce_range avoids the u8*s8 pmaddubsw saturation (ORT quantization docs).
    arm64: S8S8 QDQ (ORT quantization docs recommend S8S8 on ARM; sdot/i8mm kernels take signed activations).
    """
    arch, isa = detect_isa()
    vnni = any(f in isa for f in ("avx512_vnni", "avx_vnni", "amx"))
    if arch == "x86_64":
        q = QuantPrefs(format="qdq", activation_type="uint8", weight_type="int8", per_channel=True,
                       reduce_range=not vnni)
    else:
        q = QuantPrefs(format="qdq", activation_type="int8", weight_type="int8", per_channel=True)
    return TargetProfile(
        name="host",
        description=f"this machine ({platform.machine()}, {os.cpu_count()} cores): {', '.join(isa) or 'baseline ISA'}",
        arch=arch,
        isa=isa,
        execution_providers=("CPUExecutionProvider",),
        threads=1,
        quantization=q,
        round_to=16 if "avx512" in isa else 8,
        source="detected at run time from /proc/cpuinfo",
        is_host=True,
    )


def is_host_compatible(target: TargetProfile) -> bool:
    """True when timings on this machine say something about the target (same arch, CPU EP only or host)."""
    if target.is_host:
        return True
    arch, isa = detect_isa()
    return target.arch == arch and set(target.isa) <= set(isa) and target.execution_providers[0] == "CPUExecutionProvider"


def with_threads(target: TargetProfile, threads: int) -> TargetProfile:
    return replace(target, threads=threads)
