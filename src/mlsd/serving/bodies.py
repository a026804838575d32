"""The JSON of a request body and its shape, before any row is checked (:mod:`.validation` does that).

:func:`parse_json` reads the raw bytes (malformed JSON, ``NaN``, ``1e309`` or bad UTF-8 -> 400;
a lone UTF-16 surrogate anywhere -> 422 naming its field); :func:`parse_predict_body` checks the
shape ``{"inputs": {...}}`` or ``{"inputs": [{...}, ...]}`` (-> 422 naming ``inputs[2]``).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

import numpy as np
import orjson
from starlette.responses import JSONResponse, Response

from mlsd.serving.responses import RequestError

__all__ = ["LONE_SURROGATE", "describe_value", "json_response", "parse_json", "parse_predict_body"]

LONE_SURROGATE = "[\ud800-\udfff]"
"""A lone UTF-16 surrogate: JSON can carry one, UTF-8 cannot store or echo it."""
_HAS_SURROGATE = re.compile(LONE_SURROGATE)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how one is written in JSON text
# 19 digits in a row: maybe an integer beyond int64, which orjson reads as a float (json as an int)
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e309 is valid JSON syntax, but no finite number
        raise ValueError(f"{text[:40]} is beyond the largest float (about 1.8e308)")
    return value


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body; :class:`RequestError` 400 when it is not JSON (``NaN`` included)
    or holds a number no float can hold (``1e309`` would otherwise become ``inf``), 422 naming the
    field when a string holds a lone surrogate (``"\\ud800"``: valid JSON, but not storable text).

    >>> parse_json(b'{"a": 1}')
    {'a': 1}
    >>> parse_json(b'{"a": NaN}')
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: body: the body is not valid JSON: NaN is not valid JSON ...
    >>> parse_json(b'[1e309]')
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: body: the body is not valid JSON: 1e309 is beyond the largest ...
    >>> parse_json(b'{"inputs": [{"dest": "\\ud800"}]}')
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: inputs[0].dest: inputs[0].dest is not valid text ...
    >>> parse_json(b'["\\ud83d\\ude00"]')  # a surrogate pair is one character
    ['😀']
    """
    if not _LONG_DIGITS.search(raw):
        # orjson reads what json.loads reads, to the same values, ~10x faster; it refuses what
        # json.loads with these hooks refuses (NaN, 1e309, bad UTF-8) and lone surrogates too, so
        # a body it refuses is read again below, for the error the standard library words
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(raw)
    return _stdlib_parse(raw)


def _stdlib_parse(raw: bytes) -> Any:
    """:func:`parse_json` through ``json.loads``: its values and its words for every error."""
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RequestError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {detail}",
            [{"field": "body", "received": None, "expected": "a JSON document"}],
        ) from exc
    if _SURROGATE_ESCAPE.search(text):  # rare: only then is the parsed value walked
        _refuse_surrogates(value)
    return value


def _refuse_surrogates(value: Any) -> None:
    """422 naming the first string (or key) holding a lone surrogate: no route can store or echo it."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # iterative: a deeply nested body must not exhaust the call stack
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, v in item.items():
                where = f"{path}.{key}" if path else str(key)
                if _HAS_SURROGATE.search(key):
                    raise _surrogate_error(describe_value(where), key)
                stack.append((where, v))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, str) and _HAS_SURROGATE.search(item):
            raise _surrogate_error(path or "body", item)


def _surrogate_error(where: str, text: str) -> RequestError:
    return _shape_error(
        f"{where} is not valid text (a lone UTF-16 surrogate)",
        where,
        describe_value(text),
        "valid Unicode text (no lone surrogates)",
    )


def _shape_error(message: str, field_name: str, received: Any, expected: str) -> RequestError:
    return RequestError(
        422, "validation_error", message, [{"field": field_name, "received": received, "expected": expected}]
    )


def describe_value(value: Any) -> Any:
    """A short JSON-ready stand-in for a received value (big objects are not echoed back)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        # lone surrogates cannot be written as UTF-8: echoed as U+FFFD
        text = value[:100].encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return text if len(value) <= 100 else text + "..."
    return f"<{type(value).__name__} of {len(value)}>" if hasattr(value, "__len__") else repr(value)[:100]


def parse_predict_body(payload: Any, *, max_rows: int) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a predict body and whether it was a single row (``inputs`` an object).

    >>> parse_predict_body({"inputs": {"x": 1}}, max_rows=10)
    ([{'x': 1}], True)
    >>> parse_predict_body({"inputs": []}, max_rows=10)
    Traceback (most recent call last):
    ...
    mlsd.serving.responses.RequestError: inputs: inputs is an empty list (received []; expected 1 to 10 ...)
    """
    expected_body = 'an object {"inputs": {...}} or {"inputs": [{...}, ...]}'
    if not isinstance(payload, dict):
        raise _shape_error("the body must be a JSON object", "body", describe_value(payload), expected_body)
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        name = describe_value(str(extra[0]))
        raise _shape_error(f"unknown field {name!r} in the body", name, name, expected_body)
    if "inputs" not in payload:
        raise _shape_error("the body has no 'inputs'", "inputs", None, expected_body)
    inputs = payload["inputs"]
    if isinstance(inputs, dict):
        return [inputs], True
    if not isinstance(inputs, list):
        raise _shape_error(
            "inputs must be an object or a list of objects", "inputs", describe_value(inputs), expected_body
        )
    if not inputs:
        raise _shape_error("inputs is an empty list", "inputs", [], f"1 to {max_rows} row objects")
    if len(inputs) > max_rows:
        raise _shape_error(
            f"too many rows in one request ({len(inputs)})", "inputs", len(inputs), f"at most {max_rows} rows"
        )
    bad = [i for i, row in enumerate(inputs) if not isinstance(row, dict)]
    if bad:
        errors = [
            {"field": f"inputs[{i}]", "received": describe_value(inputs[i]), "expected": "a row object"}
            for i in bad[:100]
        ]
        raise RequestError(
            422, "validation_error", f"{len(bad)} rows are not JSON objects", errors, n_errors=len(bad)
        )
    return inputs, False


def json_response(content: Any, *, finite: Any = None, status_code: int = 200) -> Response:
    """Starlette's :class:`JSONResponse` of ``content``, its body written by orjson (a tenth of
    ``json.dumps``'s CPU for a 100-row answer).

    The JSON is the same value, in the same compact form, with non-ASCII as UTF-8 as
    JSONResponse writes it; a float may be spelled otherwise (``1e-05`` is ``0.00001``). What
    orjson would write differently is left to JSONResponse: a NaN or infinity among ``finite``
    (JSONResponse refuses those, orjson would write ``null``), numpy values, keys that are not
    strings and integers past 64 bits (tests/serving/test_json_response.py).

    >>> json_response({"score": 0.25, "city": "Zürich"}).body.decode()
    '{"score":0.25,"city":"Zürich"}'
    """
    if finite is not None and not np.isfinite(np.asarray(finite, dtype=np.float64)).all():
        return JSONResponse(content, status_code=status_code)
    try:
        body = orjson.dumps(content)
    except TypeError:  # orjson.JSONEncodeError: what JSONResponse writes or refuses itself
        return JSONResponse(content, status_code=status_code)
    return Response(body, status_code=status_code, media_type="application/json")
