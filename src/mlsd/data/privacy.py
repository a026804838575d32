"""``data.privacy``: personal columns found, and treated before any other stage sees them.

Four treatments (``docs/privacy.md``):

* ``drop``: the column is removed;
* ``pseudonymise``: each value becomes a keyed hash, the first :data:`PSEUDONYM_HEX` hex digits
  of HMAC-SHA256 under a key read from an environment variable (never stored); equal values
  stay equal, so a pseudonymised column still groups, joins on later traffic and drifts;
* ``generalise``: numbers become the label of their interval (``bins``), text its first
  ``keep_chars`` characters;
* ``keep``: unchanged, with the reason the design gives.

:func:`detect_personal_columns` (:mod:`mlsd.data.personal_data`) reads a bounded sample of the
distinct values of every text column and the column names, so a build refuses a personal column
the design did not mention. :func:`apply_privacy` treats a frame (the build) and :class:`RowPrivacy` the
rows of a request (the server), with the same functions, so both see the same values.

>>> frame = pd.DataFrame({"email": ["ann@example.com", "bob@example.org"], "age": [17, 40],
...                       "customer_id": [101, 102]})
>>> [(d.column, d.kind) for d in detect_personal_columns(frame)]
[('email', 'email')]
>>> spec = PrivacySpec.model_validate({"columns": {"email": "drop", "customer_id": "pseudonymise",
...     "age": {"generalise": {"bins": [0, 18, 65, 120]}}}})
>>> treated, report = apply_privacy(frame, spec, b"a key of sixteen+ characters")
>>> treated.columns.tolist(), treated["age"].tolist()
(['age', 'customer_id'], ['[0, 18)', '[18, 65)'])
>>> len(treated["customer_id"][0]), report.columns[2].values_changed
(16, 2)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd._data_spec import PrivacySpec, PrivacyTreatment
from mlsd.data.personal_data import Detection, detect_personal_columns, luhn_valid
from mlsd.errors import DesignError

__all__ = [
    "MIN_KEY_CHARS",
    "PSEUDONYM_HEX",
    "ColumnPrivacy",
    "Detection",
    "PrivacyReport",
    "RowPrivacy",
    "apply_privacy",
    "detect_personal_columns",
    "generalise_bins",
    "generalise_chars",
    "key_check",
    "luhn_valid",
    "privacy_key",
    "pseudonymise",
]

PSEUDONYM_HEX = 16
"""Hex digits kept of the HMAC: 64 bits, so two of a billion distinct values collide with odds of
about 3%; the values of one column are far fewer."""
MIN_KEY_CHARS = 16
"""A shorter key could be guessed, and with it every pseudonym of a known value (an e-mail)."""
# -- the treatments -------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    """The text a value is hashed as: 12, 12.0 and "12" alike, so a CSV's floats (a column with a
    missing value) and a request's JSON integers give the same pseudonym."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() and abs(f) < 2**63 else repr(f)
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _missing(value: Any) -> bool:
    return (
        value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT
    )


def pseudonymise(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 of each value's text under ``key``, its first :data:`PSEUDONYM_HEX` hex digits.

    Each distinct value is hashed once and the codes mapped back, so a million rows of a
    thousand customers cost a thousand HMACs. Missing values stay missing.

    >>> pseudonymise(pd.Series([7, 7.0, None, "7"]), b"k" * 16).tolist()  # doctest: +ELLIPSIS
    ['...', '...', None, '...']
    >>> len(set(pseudonymise(pd.Series([7, 7.0, "7"]), b"k" * 16)))
    1
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    hashed = np.array(
        [
            None,
            *(
                hmac.new(key, _canonical(u).encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
                for u in uniques
            ),
        ],
        dtype=object,
    )
    return pd.Series(hashed[codes + 1], index=values.index, dtype=object)


def _interval_labels(edges: list[float]) -> list[str]:
    shown = [f"{e:g}" for e in edges]
    labels = [f"[{a}, {b})" for a, b in itertools.pairwise(shown)]
    labels[-1] = labels[-1][:-1] + "]"  # the last interval holds its upper edge
    return labels


def generalise_bins(values: pd.Series, bins: list[float]) -> pd.Series:
    """Each number as the label of its interval ``[a, b)`` (the last one ``[a, b]``); numbers
    outside the edges, text and missing values become missing.

    >>> generalise_bins(pd.Series([0, 17.9, 18, 120, 121, None]), [0, 18, 120]).tolist()
    ['[0, 18)', '[0, 18)', '[18, 120]', '[18, 120]', None, None]
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        numbers = np.full(len(values), np.nan)
    elif pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy(dtype="float64", na_value=np.nan)
    else:  # objects (a request's JSON values): numbers only, booleans and text are not numbers
        is_number = values.map(lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool))
        numbers = pd.to_numeric(values.where(is_number), errors="coerce").to_numpy(dtype="float64")
    edges = np.asarray(bins, dtype="float64")
    at = np.searchsorted(edges, numbers, side="right") - 1
    at[numbers == edges[-1]] = len(edges) - 2
    inside = (numbers >= edges[0]) & (numbers <= edges[-1])  # NaN compares False
    labels = np.array(_interval_labels(list(bins)), dtype=object)
    out = np.full(len(numbers), None, dtype=object)
    out[inside] = labels[at[inside]]
    return pd.Series(out, index=values.index, dtype=object)


def generalise_chars(values: pd.Series, keep_chars: int) -> pd.Series:
    """The first ``keep_chars`` characters of each value's text (postcode ``SW1A 1AA`` -> ``SW1``).

    >>> generalise_chars(pd.Series(["SW1A 1AA", 10001, None]), 3).tolist()
    ['SW1', '100', None]
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    cut = np.array([None, *(_canonical(u)[:keep_chars] for u in uniques)], dtype=object)
    return pd.Series(cut[codes + 1], index=values.index, dtype=object)


def _treat(values: pd.Series, t: PrivacyTreatment, key: bytes) -> pd.Series:
    if t.treatment == "pseudonymise":
        return pseudonymise(values, key)
    if t.treatment == "generalise" and t.bins is not None:
        return generalise_bins(values, t.bins)
    if t.treatment == "generalise":
        assert t.keep_chars is not None  # PrivacyTreatment takes exactly one of bins, keep_chars
        return generalise_chars(values, t.keep_chars)
    return values


# -- the key --------------------------------------------------------------------------------------


def privacy_key(spec: PrivacySpec, environ: Mapping[str, str] | None = None) -> bytes:
    """The HMAC key from the environment variable ``spec.key_env`` (the key is never in an error).

    >>> privacy_key(PrivacySpec(key_env="K"), {"K": "x" * 20})
    b'xxxxxxxxxxxxxxxxxxxx'
    >>> privacy_key(PrivacySpec(key_env="K"), {})
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: data.privacy.key_env: the pseudonymisation key is not set: the environment \
variable K is empty or missing (received 'K'; expected K set to a secret of at least 16 characters, e.g. \
python -c 'import secrets; print(secrets.token_hex(32))')
    """
    env = os.environ if environ is None else environ
    value = env.get(spec.key_env) or ""
    hint = "python -c 'import secrets; print(secrets.token_hex(32))'"
    if not value:
        raise DesignError(
            f"the pseudonymisation key is not set: the environment variable {spec.key_env} is empty "
            "or missing",
            field="data.privacy.key_env",
            received=spec.key_env,
            expected=f"{spec.key_env} set to a secret of at least {MIN_KEY_CHARS} characters, e.g. {hint}",
        )
    if len(value) < MIN_KEY_CHARS:
        raise DesignError(
            f"the pseudonymisation key in {spec.key_env} is too short to keep pseudonyms from being guessed",
            field="data.privacy.key_env",
            received=f"{len(value)} characters",
            expected=f"at least {MIN_KEY_CHARS} characters, e.g. {hint}",
        )
    return value.encode("utf-8")


def key_check(key: bytes) -> str:
    """A fingerprint of the key that does not reveal it: the server compares it with the build's,
    so a rotated key is refused instead of turning every pseudonym into an unseen category.

    >>> key_check(b"k" * 16) == key_check(b"k" * 16), key_check(b"k" * 16) == key_check(b"j" * 16)
    (True, False)
    """
    return hmac.new(key, b"mlsd data.privacy key check", hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]


# -- a frame: the build -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnPrivacy:
    """What happened to one column: its treatment, why, and how many values it changed."""

    column: str
    treatment: str
    detail: str  # bins, keep_chars, the reason to keep, or what was dropped
    values_changed: int
    detected: str | None = None  # what detection saw in the column, if anything


@dataclass
class PrivacyReport:
    """``data.privacy`` as the build ran it (no value of any column is kept here)."""

    key_env: str
    key_check: str
    columns: list[ColumnPrivacy] = field(default_factory=list)
    rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "key_env": self.key_env,
            "key_check": self.key_check,
            "rows": self.rows,
            "columns": [asdict(c) for c in self.columns],
        }


def _detail(t: PrivacyTreatment) -> str:
    if t.treatment == "pseudonymise":
        return f"HMAC-SHA256, first {PSEUDONYM_HEX} hex digits"
    if t.treatment == "generalise" and t.bins is not None:
        return "intervals " + ", ".join(_interval_labels(t.bins))
    if t.treatment == "generalise":
        return f"first {t.keep_chars} characters"
    if t.treatment == "keep":
        return t.reason or ""
    return "removed"


def _treat_column(values: pd.Series, t: PrivacyTreatment, key: bytes) -> tuple[pd.Series, int]:
    """``values`` treated, and how many values changed: each distinct value is treated once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    treated = _treat(pd.Series(uniques, dtype=object), t, key).to_numpy(dtype=object)
    changed = np.fromiter(
        (_missing(b) or _canonical(a) != _canonical(b) for a, b in zip(uniques, treated, strict=True)),
        bool,
        count=len(uniques),
    )
    counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
    out = np.concatenate([np.array([None], dtype=object), treated])[codes + 1]
    return pd.Series(out, index=values.index, dtype=object), int(counts[changed].sum())


def apply_privacy(
    frame: pd.DataFrame,
    spec: PrivacySpec,
    key: bytes,
    *,
    detect_columns: list[str] | None = None,
) -> tuple[pd.DataFrame, PrivacyReport]:
    """``frame`` with every named column treated, and the report; refuses unknown names and, when
    ``spec.detect``, a column that looks personal but is not named (``detect_columns``: the
    columns to look at, default all).

    >>> spec = PrivacySpec.model_validate({"columns": {"mail": "drop"}})
    >>> apply_privacy(pd.DataFrame({"x": [1]}), spec, b"k" * 16)
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: data.privacy.columns.mail: no such column in the data (received 'mail'; \
expected one of 1 columns: x)
    """
    for column in spec.columns:
        if column not in frame.columns:
            raise DesignError(
                "no such column in the data",
                field=f"data.privacy.columns.{column}",
                received=column,
                expected=f"one of {frame.shape[1]} columns: " + ", ".join(map(str, list(frame.columns)[:25])),
            )
    detections = {
        d.column: d
        for d in detect_personal_columns(
            frame, columns=detect_columns if detect_columns is not None else None
        )
    }
    if spec.detect:
        unnamed = [d for c, d in detections.items() if c not in spec.columns]
        if unnamed:
            first = unnamed[0]
            others = f" (and {', '.join(d.column for d in unnamed[1:])})" if len(unnamed) > 1 else ""
            raise DesignError(
                f"column {first.column!r} looks personal ({first.describe()}) and data.privacy does not "
                f"say how to treat it{others}",
                field="data.privacy.columns",
                received=[d.column for d in unnamed],
                expected=f'{first.column}: drop, pseudonymise, {{generalise: ...}} or {{keep: "why"}} '
                "under data.privacy.columns (or data.privacy.detect: false)",
            )
    out = frame.copy()
    report = PrivacyReport(spec.key_env, key_check(key), rows=len(frame))
    for column, t in spec.columns.items():
        before = frame[column]
        if (
            t.treatment == "generalise"
            and t.bins is not None
            and not pd.api.types.is_numeric_dtype(before.dtype)
        ):
            raise DesignError(
                "bins generalise numbers, and this column holds text",
                field=f"data.privacy.columns.{column}.bins",
                received=str(before.dtype),
                expected="a numeric column, or {generalise: {keep_chars: n}} for text",
            )
        seen = detections.get(column)
        if t.treatment == "drop":
            out = out.drop(columns=column)
            changed = int(before.notna().sum())
        elif t.treatment == "keep":
            changed = 0
        else:
            out[column], changed = _treat_column(before, t, key)
        report.columns.append(
            ColumnPrivacy(column, t.treatment, _detail(t), changed, seen.describe() if seen else None)
        )
    return out, report


# -- request rows: the server ------------------------------------------------------------------------

_ABSENT = object()


class RowPrivacy:
    """The design's treatments applied to request rows (dicts from JSON), one batch at a time.

    :meth:`treat_rows` returns new rows (the caller's are left as they came), with dropped fields
    removed and the others treated as the build treated them; values the validator will refuse
    anyway (objects, lists) are left for it to refuse. The key is never in ``repr``.

    >>> rp = RowPrivacy(PrivacySpec.model_validate({"columns": {"mail": "drop", "id": "pseudonymise"}}),
    ...                 b"k" * 16)
    >>> row = rp.treat_rows([{"mail": "a@b.co", "id": 12, "x": 1}])[0]
    >>> sorted(row), row["id"] == pseudonymise(pd.Series([12]), b"k" * 16)[0]
    (['id', 'x'], True)
    >>> rp
    RowPrivacy(columns=['mail', 'id'])
    """

    def __init__(self, spec: PrivacySpec, key: bytes) -> None:
        self._key = key
        self._treated = {c: t for c, t in spec.columns.items() if t.treatment != "keep"}
        self.columns = list(spec.columns)
        self.key_check = key_check(key)

    def __repr__(self) -> str:
        return f"RowPrivacy(columns={self.columns})"

    def pseudonymised(self, column: str) -> bool:
        t = self._treated.get(column)
        return t is not None and t.treatment == "pseudonymise"

    def treat_values(self, column: str, values: list[Any]) -> list[Any]:
        """``values`` of ``column`` treated; scalars only (objects and lists pass through)."""
        t = self._treated.get(column)
        if t is None:
            return values
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        scalar = np.fromiter(
            (v is not _ABSENT and not isinstance(v, dict | list) for v in values), bool, count=len(values)
        )
        if scalar.any():
            sub = pd.Series(arr[scalar], dtype=object)
            arr[scalar] = _treat(sub, t, self._key).to_numpy(dtype=object)
        return arr.tolist()

    def treat_rows(self, rows: list[Any]) -> list[Any]:
        """New rows with the personal fields treated (non-dict rows are returned as they are)."""
        if not self._treated:
            return rows
        out = [dict(r) if isinstance(r, dict) else r for r in rows]
        dicts = [r for r in out if isinstance(r, dict)]
        for column, t in self._treated.items():
            present = [r for r in dicts if column in r]
            if not present:
                continue
            if t.treatment == "drop":
                for r in present:
                    del r[column]
                continue
            treated = self.treat_values(column, [r[column] for r in present])
            for r, v in zip(present, treated, strict=True):
                r[column] = v
        return out

    def example_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` (an example from the treated schema) as a client would send it: a number for a
        binned column (an interval label is not one), the others as they are."""
        out = dict(row)
        for column, t in self._treated.items():
            if column in out and t.bins is not None:
                out[column] = t.bins[0]
        return out

    def publish(self, properties: dict[str, Any]) -> None:
        """The published request fields of the treated columns: raw values, any JSON scalar."""
        for column, t in self._treated.items():
            if column in properties:
                properties[column] = {
                    "description": f"personal ({t.treatment}, {_detail(t)}): send the raw value; the "
                    "server treats it before it is scored or logged",
                    **({"type": ["number", "null"]} if t.bins is not None else {}),
                }
