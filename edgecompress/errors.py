"""Every user-facing failure is an EdgecompressError subclass.

Each error carries a one-line message (what was expected, what was found), an optional hint (what to do),
and an exit code: 2 for bad usage or bad input, 1 when the work itself failed (validation, budget, runtime).
"""

from __future__ import annotations

from typing import Any


class EdgecompressError(Exception):
    """Base of all edgecompress errors."""

    exit_code = 2
    default_hint = ""
    exporter_log: str  # set (not always) by the export stage on its failures; the CLI shows it with --debug

    def __init__(self, message: str, *, hint: str | None = None, report: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.report = report

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message, "exit_code": self.exit_code}
        if self.hint:
            out["hint"] = self.hint
        if self.report is not None:
            out["report"] = self.report
        return out


class ConfigError(EdgecompressError):
    """A config field, CLI flag or recipe key has a bad value."""

    default_hint = "check the value against `--help` or `edgecompress convert --dump-recipe`"


class InputError(EdgecompressError):
    """A file given by the user is missing, unreadable or of the wrong kind."""

    default_hint = "check the path and the file's format"


class ModelError(InputError):
    """An ONNX or PyTorch model cannot be loaded or is not what the stage needs."""

    default_hint = "check that the file is a valid model (`edgecompress inspect MODEL.onnx`)"


class DataError(InputError):
    """Feed data does not match the model or contains invalid values."""

    default_hint = "see 'Data formats' in README.md"


class TargetError(ConfigError):
    """A target profile is unknown or malformed."""

    default_hint = "`edgecompress targets` lists the known profiles"


class UnsupportedError(EdgecompressError):
    """The model uses something this stage cannot handle (op, dtype, structure)."""

    default_hint = "exclude the node or skip this stage"


class OutputError(EdgecompressError):
    """The output path cannot be written."""

    default_hint = "choose a writable output path"


class ValidationError(EdgecompressError):
    """A stage's numeric check failed; `report` carries the per-output numbers."""

    exit_code = 1
    default_hint = "see the report for per-output errors"


class BudgetError(EdgecompressError):
    """A target budget (size, latency, accuracy) is violated."""

    exit_code = 1
    default_hint = "relax the budget in the target profile or change the recipe"


class RuntimeFailure(EdgecompressError):
    """The work itself failed (ONNX Runtime, remote device, subprocess)."""

    exit_code = 1
    default_hint = "re-run with --debug for the full trace"


class RemoteError(RuntimeFailure):
    """A remote device could not be reached or did not run the job."""

    default_hint = "check the host, port, key and that python3 + onnxruntime are installed on the device"
