"""SSH runner against a real OpenSSH server started on loopback (throwaway host key and user key, key auth only)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgecompress.bench import BenchConfig, bench
from edgecompress.errors import ModelError, RemoteError, TargetError

SSHD = "/usr/sbin/sshd"
pytestmark = pytest.mark.skipif(not (os.path.exists(SSHD) and shutil.which("ssh") and shutil.which("ssh-keygen")),
                                reason="needs openssh-server and openssh-client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    d = tmp_path_factory.mktemp("sshd")
    host_key = _keygen(d / "host_key")
    user_key = _keygen(d / "user_key")
    other_key = _keygen(d / "other_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    cfg = d / "sshd_config"
    cfg.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    if os.getuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.skip(f"sshd did not start: {proc.stderr.read().decode()[-300:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(d / 'host_key.pub').read_text()}")
    yield {"port": port, "user": user, "key": user_key, "other_key": other_key, "known_hosts": known, "dir": d}
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _cfg(sshd, **kw):
    base = dict(runs=10, warmup=1, remote=f"ssh://{sshd['user']}@127.0.0.1:{sshd['port']}",
                remote_python=sys.executable, identity=str(sshd["key"]), known_hosts=str(sshd["known_hosts"]),
                connect_timeout_s=5, timeout_s=120)
    base.update(kw)
    return BenchConfig(**base)


def test_ssh_run_matches_local_fields(sshd, cnn_models, eval_data):
    fp32, int8 = cnn_models
    remote = bench([fp32, int8], _cfg(sshd, fidelity_samples=8), data=eval_data).to_dict()
    local = bench([fp32, int8], BenchConfig(runs=10, warmup=1, fidelity_samples=8), data=eval_data).to_dict()
    assert remote["where"].startswith("ssh://")
    for r, lo in zip(remote["models"], local["models"], strict=True):
        assert set(r) == set(lo)
        assert set(r["latency_ms"]) == set(lo["latency_ms"])
        assert set(r["ep_coverage"]) == set(lo["ep_coverage"])
        assert r["where"].startswith("ssh://") and lo["where"] == "local"
        assert r["runs"] == 10
    assert set(remote["ratios"][0]) == set(local["ratios"][0])
    # same machine, same feeds: the remote outputs are the local outputs
    assert remote["models"][1]["fidelity"]["outputs"][0]["metrics"]["max_abs"] == pytest.approx(
        local["models"][1]["fidelity"]["outputs"][0]["metrics"]["max_abs"], rel=1e-6)


def _leftovers() -> set[str]:
    return {p.name for p in Path("/tmp").glob("edgecompress-bench.*")}


def test_ssh_cleans_up_remote_folder(sshd, cnn_models):
    before = _leftovers()
    bench([cnn_models[0]], _cfg(sshd, runs=3, coverage=False))
    assert _leftovers() - before == set()


@pytest.mark.parametrize("case, match", [
    ("refused", "cannot reach host"),
    ("blackhole", "cannot reach host"),
    ("auth", "authentication failed"),
    ("hostkey", "host key verification failed"),
    ("no_ort", "no onnxruntime"),
    ("no_python", "not found"),
])
def test_ssh_failures_are_one_clear_error(sshd, cnn_models, case, match, tmp_path):
    kw = {}
    if case == "refused":
        kw["remote"] = f"ssh://{sshd['user']}@127.0.0.1:{_free_port()}"
    elif case == "blackhole":  # TEST-NET-1 (RFC 5737): never answers, or the network says unreachable
        kw["remote"] = "ssh://root@192.0.2.1:22"
        kw["connect_timeout_s"] = 2
    elif case == "auth":
        kw["identity"] = str(sshd["other_key"])
    elif case == "hostkey":
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        kw["known_hosts"] = str(empty)
    elif case == "no_ort":
        kw["remote_python"] = f"{sys.executable} -S"  # no site-packages: no numpy, no onnxruntime
    elif case == "no_python":
        kw["remote_python"] = "/nonexistent/python3"
    t0 = time.monotonic()
    with pytest.raises(RemoteError, match=match) as info:
        bench([cnn_models[0]], _cfg(sshd, runs=2, **kw))
    assert "\n" not in info.value.message
    assert time.monotonic() - t0 < 60  # bounded: ConnectTimeout and timeouts everywhere (generous on a busy box)


def test_ssh_accept_new_host_key(sshd, cnn_models, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    rep = bench([cnn_models[0]], _cfg(sshd, runs=2, coverage=False, known_hosts=str(known), accept_new_host_key=True))
    assert rep.models[0].runs == 2
    host_key = (sshd["dir"] / "host_key.pub").read_text().split()[1]
    assert host_key in known.read_text()  # recorded (Debian hashes the host name)


def test_ssh_strict_ep_and_unloadable_model(sshd, cnn_models, unloadable_model):
    with pytest.raises(TargetError, match="not available"):
        bench([cnn_models[0]], _cfg(sshd, runs=2, strict=True), target="android-arm64")
    with pytest.raises(ModelError, match="cannot load"):
        bench([unloadable_model], _cfg(sshd, runs=2))
