"""Derived columns of plain arithmetic on number arrays, computed by numpy without pandas.

A served batch derives the design's columns (``data.derive``, e.g. ``sched_dep_time // 100``)
twice: the validator range-checks them and the model reads them. Through pandas each costs two
Series and an operator dispatch, ~40 us, more than the arithmetic on a hundred rows by far. For
the expressions whose pandas result is by construction numpy's on the same arrays, this module
computes them on the arrays directly; every other expression goes through
:func:`mlsd.data.evaluate_expression` as before.

Which expressions qualify: column names, numeric constants (finite, integers below 2**53), unary
``-`` / ``+``, and ``+``, ``-``, ``*``, and ``/``, ``//``, ``%`` by a NON-ZERO constant, on int64
or float64 numpy arrays. pandas runs exactly numpy's operator for these on small arrays; it differs
only where it fills division by zero (``x // 0``) and in ``**`` overflow, both excluded.

>>> import numpy as np
>>> derive_numbers({"hour": "dep // 100"}, {"dep": np.array([515, 1930])})["hour"].tolist()
[5, 19]
>>> derive_numbers({"odd": "dep.notna()"}, {"dep": np.array([515])}) is None  # pandas' job
True
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping
from types import CodeType
from typing import Any

import numpy as np

__all__ = ["derive_numbers", "numeric_code"]

_OPS = (ast.Add, ast.Sub, ast.Mult)
_BY_CONSTANT = (ast.Div, ast.FloorDiv, ast.Mod)


def _constant(node: ast.AST) -> bool:
    """A number literal pandas and numpy read alike (no bool, no huge int, no NaN or infinity)."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _constant(node.operand)
    if not isinstance(node, ast.Constant) or isinstance(node.value, bool):
        return False
    value = node.value
    if isinstance(value, int):
        return abs(value) < 2**53
    return isinstance(value, float) and math.isfinite(value)


def _nonzero_constant(node: ast.AST) -> bool:
    if not _constant(node):
        return False
    while isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, ast.Constant) and node.value != 0


def _plain(node: ast.AST, names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        names.add(node.id)
        return True
    if _constant(node):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _plain(node.operand, names)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, _OPS):
            return _plain(node.left, names) and _plain(node.right, names)
        if isinstance(node.op, _BY_CONSTANT):
            return _plain(node.left, names) and _nonzero_constant(node.right)
    return False


@functools.lru_cache(maxsize=256)
def numeric_code(expr: str) -> tuple[CodeType, frozenset[str]] | None:
    """The compiled expression and the columns it reads, when numpy computes it as pandas does."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:  # backticks and the like: the expression language's own parser decides
        return None
    names: set[str] = set()
    if not _plain(tree.body, names) or not names:
        return None
    return compile(tree, "<derive>", "eval"), frozenset(names)


def _number_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype in (np.int64, np.float64)


def derive_numbers(
    expressions: Mapping[str, str], columns: Mapping[str, Any]
) -> dict[str, np.ndarray] | None:
    """Every derived column, in order (a later one may read an earlier one), by numpy; or None if
    any expression or any column it reads is not one numpy computes as pandas does."""
    known: dict[str, Any] = dict(columns)
    out: dict[str, np.ndarray] = {}
    for name, expr in expressions.items():
        found = numeric_code(expr) if isinstance(expr, str) else None
        if found is None:
            return None
        code, names = found
        if not all(_number_array(known.get(n)) for n in names):
            return None
        with np.errstate(all="ignore"):  # as evaluate_expression: NaN in, NaN out, no warning
            value = eval(code, {"__builtins__": {}}, {n: known[n] for n in names})
        if not _number_array(value):
            return None
        known[name] = out[name] = value
    return out
