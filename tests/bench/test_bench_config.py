"""BenchConfig validation: tables of bad values, each naming its field."""

from __future__ import annotations

import pytest

from edgecompress.bench import BenchConfig, parse_remote, parse_threads
from edgecompress.errors import ConfigError


@pytest.mark.parametrize("kw, match", [
    ({"runs": 0}, "runs"), ({"runs": 1.5}, "runs"), ({"runs": True}, "runs"), ({"warmup": -1}, "warmup"),
    ({"duration_s": 0}, "duration_s"), ({"duration_s": float("nan")}, "duration_s"),
    ({"threads": [1]}, "threads"), ({"threads": (1, 1)}, "threads"), ({"threads": (-1,)}, "threads"),
    ({"fidelity_samples": 0}, "fidelity_samples"), ({"max_drop": 1.5}, "max_drop"),
    ({"parity_tol": 0}, "parity_tol"), ({"connect_timeout_s": 0}, "connect_timeout_s"),
    ({"timeout_s": float("inf")}, "timeout_s"), ({"strict": "yes"}, "strict"), ({"interleave": 1}, "interleave"),
    ({"remote": "http://host"}, "remote"), ({"remote": "ssh://host:70000"}, "port"),
    ({"emulate": "riscv64"}, "emulate"), ({"emulate": "arm64", "remote": "ssh://h"}, "emulate"),
    ({"remote_python": " "}, "remote_python"), ({"emulate_runs": 0}, "emulate_runs"),
])
def test_bad_values(kw, match):
    with pytest.raises(ConfigError, match=match):
        BenchConfig(**kw)


def test_parse_remote():
    r = parse_remote("ssh://pi@raspberrypi.local:2222")
    assert (r.kind, r.user, r.host, r.port) == ("ssh", "pi", "raspberrypi.local", 2222)
    assert parse_remote("ssh://10.0.0.5").port == 22 and parse_remote("ssh://10.0.0.5").user is None
    assert parse_remote("adb://emulator-5554").serial == "emulator-5554"
    assert parse_remote("adb://").serial == ""


def test_parse_threads():
    assert parse_threads("1,2, 4") == (1, 2, 4)
    with pytest.raises(ConfigError, match="threads"):
        parse_threads("1,two")


def test_import_is_torch_free():
    import subprocess
    import sys

    code = "import sys, edgecompress.bench, edgecompress.cli.bench_cmd; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
