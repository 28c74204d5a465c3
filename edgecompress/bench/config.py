"""BenchConfig: the frozen configuration of a benchmark (recipe keys = CLI flags with `_`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..fidelity.config import CompareConfig

EMULATE_ARCHES = ("arm64",)
_SSH_RE = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._:\[\]-]+?)(?::(?P<port>\d+))?/?$")
_ADB_RE = re.compile(r"^adb://(?P<serial>[A-Za-z0-9._:-]*)/?$")


@dataclass(frozen=True)
class RemoteSpec:
    kind: str  # "ssh" | "adb"
    host: str = ""
    user: str | None = None
    port: int = 22
    serial: str = ""

    def __str__(self) -> str:
        if self.kind == "adb":
            return f"adb://{self.serial}"
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}:{self.port}"


def parse_remote(spec: str) -> RemoteSpec:
    """`ssh://[user@]host[:port]` or `adb://[serial]`."""
    m = _SSH_RE.match(spec)
    if m:
        port = int(m.group("port") or 22)
        if not 1 <= port <= 65535:
            raise ConfigError(f"remote: port {port} out of range 1..65535")
        return RemoteSpec("ssh", host=m.group("host"), user=m.group("user"), port=port)
    m = _ADB_RE.match(spec)
    if m:
        return RemoteSpec("adb", serial=m.group("serial"))
    raise ConfigError(f"remote: expected ssh://[user@]host[:port] or adb://[serial], got {spec!r}")


@dataclass(frozen=True)
class BenchConfig:
    """How to benchmark. `threads=()` takes the target profile's thread count."""

    runs: int = 50
    warmup: int = 5
    duration_s: float | None = None
    threads: tuple[int, ...] = ()
    interleave: bool = True
    strict: bool = False
    coverage: bool = True
    fidelity_samples: int = 32
    metric: str = "auto"
    detection: str = ""
    max_drop: float | None = None
    remote: str | None = None
    remote_python: str = "python3"
    known_hosts: str | None = None
    accept_new_host_key: bool = False
    identity: str | None = None
    connect_timeout_s: float = 10.0
    timeout_s: float = 900.0
    emulate: str | None = None
    emulate_runs: int = 3
    parity_tol: float = 0.05
    perf_test: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        _int("runs", self.runs, 1, 10_000_000)
        _int("warmup", self.warmup, 0, 1_000_000)
        _int("fidelity_samples", self.fidelity_samples, 1, 1_000_000)
        _int("emulate_runs", self.emulate_runs, 1, 10_000)
        _int("seed", self.seed, 0, 2**31)
        if self.duration_s is not None:
            _num("duration_s", self.duration_s)
        CompareConfig(self.metric, self.detection)
        if self.max_drop is not None:
            if isinstance(self.max_drop, bool) or not isinstance(self.max_drop, (int, float)) or \
                    not 0 <= self.max_drop < 1:
                raise ConfigError(f"max_drop must be a fraction in [0, 1), got {self.max_drop!r}")
        for name in ("parity_tol", "connect_timeout_s", "timeout_s"):
            _num(name, getattr(self, name))
        if not isinstance(self.threads, tuple):
            raise ConfigError(f"threads must be a tuple of integers, got {self.threads!r}")
        for t in self.threads:
            _int("threads", t, 0, 256)
        if len(set(self.threads)) != len(self.threads):
            raise ConfigError(f"threads has duplicates: {self.threads!r}")
        for name in ("interleave", "strict", "coverage", "accept_new_host_key"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.remote is not None:
            parse_remote(self.remote)
        if self.emulate is not None and self.emulate not in EMULATE_ARCHES:
            raise ConfigError(f"emulate must be one of {', '.join(EMULATE_ARCHES)}, got {self.emulate!r}")
        if self.emulate and self.remote:
            raise ConfigError("emulate and remote cannot be combined: emulation runs on this host")
        if not isinstance(self.remote_python, str) or not self.remote_python.strip():
            raise ConfigError("remote_python must be a non-empty command, e.g. python3")

    @property
    def compare(self) -> CompareConfig:
        return CompareConfig(self.metric, self.detection, ("none",))  # each feed runs alone in the runner

    @property
    def remote_spec(self) -> RemoteSpec | None:
        return parse_remote(self.remote) if self.remote else None

    def to_dict(self) -> dict[str, Any]:
        from ..artifact import config_to_dict

        return config_to_dict(self)


def _int(name: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {v!r}")


def _num(name: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or v != v or v == float("inf"):
        raise ConfigError(f"{name} must be a positive number, got {v!r}")


def parse_threads(spec: str) -> tuple[int, ...]:
    """`1,2,4` -> (1, 2, 4)."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(f"threads: expected comma-separated integers like 1,2; got {spec!r}")
        out.append(int(part))
    return tuple(out)
