"""Remote Linux devices over SSH: system `ssh`/`scp`, key auth only, host key checking on, timeouts everywhere.

The staging folder (runner script, job, models, feeds) is copied to a fresh `mktemp -d` folder on the device,
the runner runs there with the device's python3 (stdlib + numpy + onnxruntime; nothing of edgecompress), the
output files come back, and the remote folder is removed whatever happened.

Host keys: checked against ~/.ssh/known_hosts by default (StrictHostKeyChecking=yes); `known_hosts` points at
another file; `accept_new_host_key` trusts a host seen for the first time (StrictHostKeyChecking=accept-new)
but still refuses a changed key.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..errors import RemoteError, UnsupportedError
from .config import RemoteSpec
from .transport import RUNNER, one_line, parse_runner_output


class SSHTransport:
    def __init__(self, spec: RemoteSpec, *, python: str = "python3", known_hosts: str | None = None,
                 accept_new_host_key: bool = False, identity: str | None = None, connect_timeout_s: float = 10.0,
                 timeout_s: float = 900.0) -> None:
        for tool in ("ssh", "scp"):
            if shutil.which(tool) is None:
                raise UnsupportedError(f"{tool} not found", hint="install openssh-client")
        self.spec = spec
        self.where = str(spec)
        self.python = python
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        ct = max(1, int(round(connect_timeout_s)))
        opts = ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={ct}", "-o", "ServerAliveInterval=5",
                "-o", f"ServerAliveCountMax={max(2, ct // 5)}", "-o", "LogLevel=ERROR",
                "-o", "StrictHostKeyChecking=" + ("accept-new" if accept_new_host_key else "yes"),
                "-o", "PasswordAuthentication=no", "-o", "KbdInteractiveAuthentication=no"]
        if known_hosts:
            opts += ["-o", f"UserKnownHostsFile={known_hosts}"]
        if identity:
            opts += ["-i", str(identity), "-o", "IdentitiesOnly=yes"]
        self.opts = opts
        self.dest = f"{spec.user}@{spec.host}" if spec.user else spec.host
        self.remote_dir: str | None = None
        self.uploaded: set[str] = set()

    def _ssh(self, command: str, timeout: float) -> subprocess.CompletedProcess:
        cmd = ["ssh", *self.opts, "-p", str(self.spec.port), self.dest, command]
        return self._call(cmd, timeout, "ssh")

    def _call(self, cmd: list[str], timeout: float, what: str) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"{self.where}: {what} timed out after {timeout:.0f} s") from None
        if proc.returncode == 255 or (what == "scp" and proc.returncode != 0):
            raise self._ssh_failure(proc.stderr or proc.stdout, what)
        return proc

    def _ssh_failure(self, text: str, what: str) -> RemoteError:
        t = one_line(text)
        low = t.lower()
        if "host key verification failed" in low or "remote host identification has changed" in low:
            return RemoteError(f"{self.where}: host key verification failed",
                               hint="add the host's key to known_hosts (ssh-keyscan), pass --known-hosts FILE, "
                                    "or --accept-new-host-key for a first contact")
        if "permission denied" in low or "too many authentication failures" in low:
            return RemoteError(f"{self.where}: authentication failed ({t[-160:]})",
                               hint="use key auth: --identity KEY, and the key in the device's authorized_keys")
        if any(s in low for s in ("connection refused", "timed out", "no route to host", "could not resolve",
                                  "name or service not known", "network is unreachable", "connection closed",
                                  "connection reset")):
            return RemoteError(f"{self.where}: cannot reach host ({t[-160:]})",
                               hint="check the host, port and network; the device must run sshd")
        return RemoteError(f"{self.where}: {what} failed: {t[-200:] or 'no message'}")

    def _open(self) -> str:
        if self.remote_dir is None:
            proc = self._ssh("mktemp -d /tmp/edgecompress-bench.XXXXXX", self.connect_timeout_s + 30)
            d = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
            if proc.returncode != 0 or not d.startswith("/tmp/edgecompress-bench."):
                raise RemoteError(f"{self.where}: cannot make a temp folder: {one_line(proc.stderr)}")
            self.remote_dir = d
        return self.remote_dir

    def run(self, staging: Path, job: str, fetch: tuple[str, ...] = ()) -> dict[str, Any]:
        rdir = self._open()
        files = [p for p in sorted(staging.iterdir()) if p.is_file() and p.name not in self.uploaded]
        if files:
            self._call(["scp", "-q", "-B", *self.opts, "-P", str(self.spec.port), *map(str, files),
                        f"{self.dest}:{rdir}/"], self.connect_timeout_s + self.timeout_s, "scp")
            self.uploaded.update(p.name for p in files)
        cmd = (f"cd {shlex.quote(rdir)} && {self.python} {shlex.quote(RUNNER.name)} {shlex.quote(job)}")
        proc = self._ssh(cmd, self.connect_timeout_s + self.timeout_s)
        if proc.returncode == 127 or ("not found" in proc.stderr and "@@EDGECOMPRESS@@" not in proc.stdout):
            raise RemoteError(f"{self.where}: {self.python!r} not found on the device: {one_line(proc.stderr)}",
                              hint="install python3 on the device or pass --remote-python PATH")
        result = parse_runner_output(proc.stdout, proc.stderr, proc.returncode, self.where)
        if fetch:
            self._call(["scp", "-q", "-B", *self.opts, "-P", str(self.spec.port),
                        *[f"{self.dest}:{rdir}/{name}" for name in fetch], str(staging) + "/"],
                       self.connect_timeout_s + self.timeout_s, "scp")
        return result

    def close(self) -> None:
        if self.remote_dir is None:
            return
        rdir, self.remote_dir = self.remote_dir, None
        try:
            self._ssh(f"rm -rf {shlex.quote(rdir)}", self.connect_timeout_s + 30)
        except RemoteError:
            pass  # cleanup is best effort: the run's own error (if any) is the one to report
