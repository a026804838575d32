"""One family of exceptions for everything mlsd raises on purpose.

Every error says what was wrong, what was received and what was expected, so the
CLI can print it without a traceback and the server can turn it into a 4xx.

>>> err = DesignError("unknown key", field="models.candidates[0].typ",
...                   received="typ", expected="one of: name, type, params", file="design.yaml", line=12)
>>> print(err)
design.yaml:12: models.candidates[0].typ: unknown key (received 'typ'; expected one of: name, type, params)
>>> isinstance(err, MlsdError)
True
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AlertError",
    "ArtifactIntegrityError",
    "ConflictError",
    "DataError",
    "DesignError",
    "GateError",
    "LeakageError",
    "LogError",
    "MlsdError",
    "ModelError",
    "NotFoundError",
    "RegistryError",
    "SchemaError",
    "ServingError",
]


class MlsdError(Exception):
    """Base of every error mlsd raises on purpose (the CLI exits 2 on these, never a traceback).

    ``field`` names the place (a design path like ``data.split.valid_from`` or a column),
    ``received`` what was found and ``expected`` what would have been accepted.
    """

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        received: Any = None,
        expected: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.received = received
        self.expected = expected
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        head = f"{where}{self.field}: " if self.field else where
        detail = []
        if self.received is not None:
            detail.append(f"received {self.received!r}")
        if self.expected:
            detail.append(f"expected {self.expected}")
        tail = f" ({'; '.join(detail)})" if detail else ""
        return f"{head}{self.message}{tail}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (used by the server's error schema and ``--json`` outputs)."""
        return {
            "type": type(self).__name__,
            "message": self.message,
            "field": self.field,
            "received": None if self.received is None else repr(self.received),
            "expected": self.expected,
            "file": self.file,
            "line": self.line,
        }


class DesignError(MlsdError):
    """The design file is malformed: bad YAML, unknown key, wrong type, missing column."""


class DataError(MlsdError):
    """A data source cannot be read, joined or labelled as the design says."""


class SchemaError(DataError):
    """Rows do not match the schema inferred at build time (types, ranges, categories)."""


class LeakageError(DataError):
    """A leakage check failed and the design says such a finding fails the build (exit 1)."""

    exit_code = 1


class ModelError(MlsdError):
    """A model cannot be fitted, evaluated or selected as the design says."""


class RegistryError(MlsdError):
    """The model registry has no such model, version or alias, or cannot be written."""


class ArtifactIntegrityError(RegistryError):
    """A registered artefact differs from what its build recorded (changed, truncated, unsigned)."""


class GateError(MlsdError):
    """No candidate passed the design's constraints; the CLI exits 1 on this."""

    exit_code = 1


class LogError(MlsdError):
    """The prediction log cannot be opened, written or read."""


class NotFoundError(LogError):
    """A record the caller names (a request id) is not in the log; the server answers 404."""


class ConflictError(LogError):
    """A write contradicts what is already stored (other feedback for the same request); 409."""


class ServingError(MlsdError):
    """The server cannot start or answer: no champion, bad settings, or a failed dependency."""


class AlertError(MlsdError):
    """A monitoring alert fired; the CLI exits 1 on this."""

    exit_code = 1
