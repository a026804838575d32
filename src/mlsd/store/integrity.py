"""SHA-256 manifests of artefact folders, signed with HMAC-SHA256 when ``MLSD_SIGNING_KEY`` is set.

A registered model is a folder of files, two of them pickles (MLflow's ``python_model.pkl`` and
the ``packaged_model.joblib`` of the :class:`~mlsd.store.PackagedModel`). Unpickling runs code,
so the build records the SHA-256 and size of every file of the folder it registers, and every
loader checks the folder against that record *before* unpickling anything. A changed,
truncated, missing or added file is refused with :class:`~mlsd.errors.ArtifactIntegrityError`
naming the file. With ``MLSD_SIGNING_KEY`` set the record is also signed (HMAC-SHA256), so
that rewriting both a file and its recorded hash is detected too.

>>> import tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as tmp:
...     folder = pathlib.Path(tmp)
...     _ = (folder / "model.joblib").write_bytes(b"weights")
...     recorded = manifest(folder)
...     verify_manifest(folder, recorded, what="demo")  # unchanged: passes
...     _ = (folder / "model.joblib").write_bytes(b"weigh")
...     verify_manifest(folder, recorded, what="demo")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.ArtifactIntegrityError: ...joblib: demo: the file is truncated or replaced (5 of 7 bytes) ...
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlsd.errors import ArtifactIntegrityError

__all__ = [
    "SIGNING_KEY_ENV",
    "canonical",
    "file_record",
    "manifest",
    "no_record_error",
    "sign",
    "signing_key",
    "verified_bytes",
    "verify_file",
    "verify_manifest",
    "verify_signature",
]

SIGNING_KEY_ENV = "MLSD_SIGNING_KEY"
_REBUILD = "run `mlsd build` again to register a model from trusted code and data"


def signing_key() -> bytes | None:
    """The HMAC key from ``MLSD_SIGNING_KEY`` (``None`` when unset or empty)."""
    value = os.environ.get(SIGNING_KEY_ENV, "")
    return value.encode() if value else None


def file_record(path: Path) -> dict[str, Any]:
    """``{"sha256": hex, "bytes": size}`` of one file, read in chunks."""
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return {"sha256": digest, "bytes": path.stat().st_size}


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """The record of every file under ``folder``, by POSIX path relative to it, sorted."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {p.relative_to(folder).as_posix(): file_record(p) for p in files}


def canonical(payload: Any) -> bytes:
    """The one byte string a payload is signed as (sorted keys, no spaces)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def sign(payload: Any, key: bytes | None = None) -> str | None:
    """HMAC-SHA256 of ``payload`` (hex) with ``key`` or the environment's key; ``None`` without one."""
    key = key if key is not None else signing_key()
    if key is None:
        return None
    return hmac.new(key, canonical(payload), hashlib.sha256).hexdigest()


def verify_signature(payload: Any, signature: str | None, *, what: str, field: str) -> None:
    """Refuse a missing or wrong signature when ``MLSD_SIGNING_KEY`` is set (no key: nothing to check)."""
    key = signing_key()
    if key is None:
        return
    if not signature:
        raise ArtifactIntegrityError(
            f"{what}: no HMAC signature is recorded, and {SIGNING_KEY_ENV} is set",
            field=field,
            received="(unsigned)",
            expected=f"a version registered by a build that had {SIGNING_KEY_ENV} set; {_REBUILD}",
        )
    if not hmac.compare_digest(sign(payload, key) or "", signature):
        raise ArtifactIntegrityError(
            f"{what}: the recorded hashes do not match their HMAC signature "
            "(they were changed after the build, or another key signed them)",
            field=field,
            received=signature[:16] + "...",
            expected=f"the signature of the build's record under this {SIGNING_KEY_ENV}; {_REBUILD}",
        )


def verify_file(path: Path, record: Mapping[str, Any], *, what: str) -> None:
    """Refuse ``path`` unless its size and SHA-256 are those of ``record``."""
    verified_bytes(path, record, what=what)


def verified_bytes(path: Path, record: Mapping[str, Any], *, what: str) -> bytes:
    """The bytes of ``path``, read once and checked against ``record``: unpickle these, not the
    file again, so a file swapped after the check is never read."""
    if not path.is_file():
        raise ArtifactIntegrityError(
            f"{what}: the file is missing",
            field=str(path),
            received="(no such file)",
            expected=f"the file the build registered; {_REBUILD}",
        )
    data = path.read_bytes()
    size, expected_size = len(data), int(record.get("bytes", -1))
    if size < expected_size:
        raise ArtifactIntegrityError(
            f"{what}: the file is truncated or replaced ({size} of {expected_size} bytes)",
            field=str(path),
            received=f"{size} bytes",
            expected=f"{expected_size} bytes with SHA-256 {record.get('sha256')}; {_REBUILD}",
        )
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, str(record.get("sha256", ""))):
        raise ArtifactIntegrityError(
            f"{what}: the file does not match the SHA-256 recorded at build time",
            field=str(path),
            received=actual,
            expected=f"{record.get('sha256')} ({expected_size} bytes); {_REBUILD}",
        )
    return data


def verify_manifest(
    folder: Path,
    recorded: Mapping[str, Mapping[str, Any]] | None,
    *,
    what: str,
    tolerated: frozenset[str] = frozenset(),
) -> None:
    """Refuse ``folder`` unless it holds exactly the recorded files, each with its recorded hash.

    ``tolerated`` names files that may appear later without being recorded (written by a loader,
    never read as code).
    """
    if not recorded:
        raise no_record_error(str(folder), what=what)
    if not folder.is_dir():
        raise ArtifactIntegrityError(
            f"{what}: the artefact folder is missing",
            field=str(folder),
            received="(no such folder)",
            expected=f"the folder the build registered; {_REBUILD}",
        )
    for name, record in recorded.items():
        verify_file(folder / name, record, what=what)
    # A file the build did not write may be read by a loader (MLflow reads MLmodel's paths),
    # so an added file is refused as well.
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    extra = sorted(present - set(recorded) - tolerated)
    if extra:
        raise ArtifactIntegrityError(
            f"{what}: {len(extra)} file(s) not written by the build",
            field=str(folder / extra[0]),
            received=extra[:5],
            expected=f"only the files the build registered ({', '.join(sorted(recorded))}); {_REBUILD}",
        )


def no_record_error(field: str, *, what: str) -> ArtifactIntegrityError:
    """The error for an artefact whose build recorded no hashes (so nothing vouches for it)."""
    return ArtifactIntegrityError(
        f"{what}: no SHA-256 of its files is recorded (registered before mlsd recorded them)",
        field=field,
        received="(no record)",
        expected=f"a version whose build recorded the hashes; {_REBUILD}",
    )
