"""A small, safe, vectorised expression language over the columns of a DataFrame.

Used for labels (``"arr_delay > 15"``), row filters (``"arr_delay.notna()"``), derived
columns (``"sched_dep_time // 100"``) and rule baselines. An expression is parsed with
:mod:`ast` and only a whitelist of node types is accepted; nothing is imported, no
attribute other than the listed Series methods is reachable, and evaluation works on
whole columns (pandas Series), never row by row.

Accepted:

- names (columns; quote a name that is not an identifier with backticks: ```time hour```),
- number, string, boolean and ``None`` constants, lists/tuples of constants,
- arithmetic ``+ - * / // % **``, unary ``-``/``+``, comparisons (chained too, and
  ``in``/``not in`` a list), ``and``/``or``/``not`` (element-wise, like ``& | ~``),
- the methods ``.isna() .notna() .isin([...]) .abs() .clip(..) .fillna(..) .astype(..)
  .str.len() .str.contains(..) .str.startswith(..)`` and the functions
  ``abs log log1p exp sqrt where(cond, a, b)``.

Resources are bounded too, so a hostile expression is refused in milliseconds instead of
hanging or exhausting memory: its length (:data:`MAX_CHARS`), the number of nodes and the
depth of its tree (:data:`MAX_NODES`, :data:`MAX_DEPTH`) before it is compiled; an exponent
(:data:`MAX_EXPONENT`) statically when it is a constant; and at evaluation the size of what
``**`` on integers, ``*`` and ``+`` on strings or lists can build (:data:`MAX_INT_BITS`,
:data:`MAX_SEQUENCE`, :data:`MAX_SERIES_CHARS`). ``%`` on strings (formatting) is refused,
and so is a ``.str.contains`` pattern that repeats a repeated group (catastrophic backtracking).

>>> import pandas as pd
>>> df = pd.DataFrame({"arr_delay": [3.0, 20.0, None], "sched_dep_time": [515, 1230, 2359]})
>>> evaluate_expression(df, "arr_delay > 15", field="data.label").tolist()
[False, True, False]
>>> evaluate_expression(df, "sched_dep_time // 100").tolist()
[5, 12, 23]
>>> evaluate_expression(df, "arr_delay.notna() and not (sched_dep_time < 600)").tolist()
[False, True, False]
>>> sorted(parse_expression("where(a > 0, log1p(a), 0) + b", field="f").columns)
['a', 'b']
"""

from __future__ import annotations

import ast
import difflib
import functools
import operator
import re
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from mlsd.errors import DesignError

__all__ = [
    "MAX_CHARS",
    "MAX_DEPTH",
    "MAX_EXPONENT",
    "MAX_INT_BITS",
    "MAX_NODES",
    "MAX_SEQUENCE",
    "MAX_SERIES_CHARS",
    "ParsedExpression",
    "evaluate_expression",
    "parse_expression",
]

#: longest expression text; a label or filter is a line, a derived column a few
MAX_CHARS = 10_000
#: most AST nodes (``a > 1`` has 5); bounds the work of every later step
MAX_NODES = 2_000
#: deepest AST nesting. A chain ``a + b + ...`` nests one level per term, so this admits sums of
#: about 245 columns; the recursive compiler uses about two frames a level, which keeps it well
#: inside Python's recursion limit of 1,000 even when called from deep stacks (a 600-term sum
#: is what first breaks it)
MAX_DEPTH = 250
#: largest constant exponent of ``**`` (and any exponent of a scalar base at evaluation)
MAX_EXPONENT = 1_000
#: largest integer ``**`` may build, in bits (about 30,000 decimal digits)
MAX_INT_BITS = 100_000
#: longest string or list a scalar ``*`` or ``+`` may build
MAX_SEQUENCE = 100_000
#: most characters ``*`` or ``+`` on a column of strings may build over all its rows
MAX_SERIES_CHARS = 50_000_000

_EXPECTED = (
    "columns, constants, + - * / // % **, comparisons, and/or/not, & | ~, the methods "
    ".isna .notna .isin .abs .clip .fillna .astype .str.len .str.contains .str.startswith "
    "and the functions abs, log, log1p, exp, sqrt, where"
)
_METHODS = {"isna", "notna", "isin", "abs", "clip", "fillna", "astype"}
_STR_METHODS = {"len", "contains", "startswith"}
_ASTYPES = {"int", "int64", "int32", "Int64", "float", "float64", "float32", "Float64", "str", "string"}
_ASTYPES |= {"bool", "boolean", "category"}
_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr)
_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_BACKTICK = re.compile(r"`([^`]+)`")
# a group holding a quantifier, itself quantified: the shape of catastrophic backtracking
_NESTED_QUANTIFIER = re.compile(
    r"\((?:[^()\\]|\\.)*(?:[*+]|\{\d*,?\d*\})(?:[^()\\]|\\.)*\)(?:[*+]|\{\d*,?\d*\})"
)


class _LimitError(Exception):
    """A guarded operator refused to build a result beyond a bound (becomes a DesignError)."""


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer)


def _string_chars(x: Any) -> Any:
    """Characters per row of a string column (``None`` if ``x`` is not one)."""
    if isinstance(x, pd.Series) and (ptypes.is_object_dtype(x.dtype) or ptypes.is_string_dtype(x.dtype)):
        try:
            return x.str.len().fillna(0)
        except AttributeError:  # an object column without strings has no .str
            return None
    return None


def _pow(a: Any, b: Any) -> Any:
    if np.ndim(b) == 0 and isinstance(b, int | float | np.number) and abs(float(b)) > MAX_EXPONENT:
        raise _LimitError(f"exponent {b} is larger than {MAX_EXPONENT}")
    if _is_int(a) and _is_int(b) and b > 0 and int(a).bit_length() * int(b) > MAX_INT_BITS:
        raise _LimitError(f"{a!r:.40} ** {b} would have about {int(a).bit_length() * int(b):,} bits")
    return a**b


def _mul(a: Any, b: Any) -> Any:
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, str | list | tuple) and _is_int(n) and len(seq) * int(n) > MAX_SEQUENCE:
            raise _LimitError(
                f"repeating a {type(seq).__name__} {n} times builds {len(seq) * int(n):,} items"
            )
        chars = _string_chars(seq)
        if chars is not None and not isinstance(n, str) and np.ndim(n) <= 1:
            total = float((chars * pd.to_numeric(n, errors="coerce")).clip(lower=0).sum())
            if total > MAX_SERIES_CHARS:
                raise _LimitError(f"repeating the strings of a column builds {total:,.0f} characters")
    return a * b


def _add(a: Any, b: Any) -> Any:
    if (
        isinstance(a, str | list | tuple)
        and isinstance(b, str | list | tuple)
        and len(a) + len(b) > MAX_SEQUENCE
    ):
        raise _LimitError(f"concatenating builds {len(a) + len(b):,} items")
    chars = [c for c in (_string_chars(a), _string_chars(b)) if c is not None]
    if (
        chars
        and sum(float(c.sum()) for c in chars)
        + sum(len(x) for x in (a, b) if isinstance(x, str)) * max(len(c) for c in chars)
        > MAX_SERIES_CHARS
    ):
        raise _LimitError(f"concatenating strings builds more than {MAX_SERIES_CHARS:,} characters")
    return a + b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str) or _string_chars(a) is not None:
        raise _LimitError("% on strings (formatting) is not allowed")
    return a % b


def _where(cond: Any, a: Any, b: Any) -> Any:
    out = np.where(np.asarray(cond, dtype=bool), a, b)
    index = next((x.index for x in (cond, a, b) if isinstance(x, pd.Series)), None)
    return pd.Series(out, index=index) if index is not None else out


def _and(*xs: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = out & x
    return out


def _or(*xs: Any) -> Any:
    out = xs[0]
    for x in xs[1:]:
        out = out | x
    return out


def _not(x: Any) -> Any:
    return (not x) if isinstance(x, bool | np.bool_) else ~x


def _isin(x: Any, values: Any, negate: bool) -> Any:
    out = x.isin(list(values)) if isinstance(x, pd.Series) else np.isin(x, list(values))
    return ~out if negate else out


# Prefixed so that a column called ``log`` or ``where`` never shadows a function.
_FUNCTIONS: dict[str, Any] = {
    "abs": np.abs,
    "log": np.log,
    "log1p": np.log1p,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "where": _where,
}
_RUNTIME = {f"_fn_{k}": v for k, v in _FUNCTIONS.items()} | {
    "_op_and": _and,
    "_op_or": _or,
    "_op_not": _not,
    "_op_isin": _isin,
    "_op_pow": _pow,
    "_op_mul": _mul,
    "_op_add": _add,
    "_op_mod": _mod,
}
# operators rewritten into the guarded functions above
_GUARDED = {ast.Pow: "_op_pow", ast.Mult: "_op_mul", ast.Add: "_op_add", ast.Mod: "_op_mod"}
# constant subexpressions computed at parse time, through the same guards
_FOLD: dict[type, Any] = {
    ast.Add: _add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: _mod,
    ast.Pow: _pow,
}


@dataclass(frozen=True)
class ParsedExpression:
    """A validated expression: its text, the design field it came from and the columns it reads."""

    expr: str
    field: str
    columns: frozenset[str]
    _code: Any = dc_field(repr=False, compare=False)
    _names: dict[str, str] = dc_field(repr=False, compare=False, default_factory=dict)

    def check_columns(self, available: Iterable[str]) -> None:
        """Raise :class:`DesignError` for the first referenced column not in ``available``."""
        available = [str(c) for c in available]
        for col in sorted(self.columns):
            if col not in available:
                close = difflib.get_close_matches(col, available, n=3, cutoff=0.6)
                hint = f"did you mean: {', '.join(close)}?" if close else "no similar column"
                raise DesignError(
                    f"expression {_shown(self.expr)} refers to unknown column {col!r}; {hint}",
                    field=self.field,
                    received=col,
                    expected="one of the columns: " + ", ".join((close or available)[:20]),
                )

    def evaluate(self, df: pd.DataFrame) -> pd.Series:
        """Evaluate on ``df``; a scalar result is broadcast to a Series over ``df.index``."""
        self.check_columns(df.columns)
        namespace: dict[str, Any] = {"__builtins__": {}} | _RUNTIME
        namespace |= {ident: df[col] for ident, col in self._names.items()}
        try:
            # where(cond, a, b) computes both branches everywhere, like numpy: log of the masked-out
            # negatives is expected, so floating-point warnings are silenced
            with np.errstate(all="ignore"):
                out = eval(self._code, namespace)
        except _LimitError as exc:
            raise DesignError(
                f"expression {_shown(self.expr)} is refused: {exc}",
                field=self.field,
                received=_cut(self.expr),
                expected="an expression whose results stay within the resource limits",
            ) from None
        except Exception as exc:  # MemoryError and RecursionError included: both are Exceptions
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise DesignError(
                f"expression {_shown(self.expr)} cannot be evaluated: {type(exc).__name__}: {detail}",
                field=self.field,
                received=_cut(self.expr),
                expected="an expression whose operations fit the column types",
            ) from None
        if isinstance(out, pd.Series):
            return out
        if np.ndim(out) == 0:
            return pd.Series(out, index=df.index)
        return pd.Series(np.asarray(out), index=df.index)


class _Transformer(ast.NodeTransformer):
    """Validates each node against the whitelist and rewrites it into runnable vectorised code."""

    def __init__(self, expr: str, field: str, names: dict[str, str]) -> None:
        self.expr, self.field, self.backticks = expr, field, names
        self.names: dict[str, str] = {}  # column -> its variable in the compiled code

    def fail(self, node: ast.AST, why: str) -> DesignError:
        snippet = ast.get_source_segment(self.expr, node) or ast.dump(node)
        for ident, col in self.backticks.items():
            snippet = snippet.replace(ident, f"`{col}`")
        return DesignError(
            f"{why} in expression {_shown(self.expr)}",
            field=self.field,
            received=_cut(snippet),
            expected=_EXPECTED,
        )

    def generic_visit(self, node: ast.AST) -> ast.AST:
        raise self.fail(node, f"{type(node).__name__} is not allowed")

    def visit_Expression(self, node: ast.Expression) -> ast.AST:
        node.body = self.visit(node.body)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.Constant:
        if node.value is None or isinstance(node.value, bool | int | float | str):
            return node
        raise self.fail(node, f"constant of type {type(node.value).__name__} is not allowed")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id.startswith("_") and node.id not in self.backticks:
            raise self.fail(node, "names starting with '_' are not allowed")
        # keyed by column, so that ``a`` and ```a``` in one expression share one variable
        column = self.backticks.get(node.id, node.id)
        ident = self.names.setdefault(column, f"_col_{len(self.names)}")
        return ast.copy_location(ast.Name(id=ident, ctx=ast.Load()), node)

    def _constants(self, node: ast.AST) -> ast.expr:
        if isinstance(node, ast.List | ast.Tuple):
            elts = [self._constant(e) for e in node.elts]
            return ast.copy_location(ast.List(elts=elts, ctx=ast.Load()), node)
        raise self.fail(node, "expected a list of constants")

    def _constant(self, node: ast.AST) -> ast.expr:
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub | ast.UAdd)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
        ):
            return node
        if isinstance(node, ast.Constant):
            return self.visit_Constant(node)
        raise self.fail(node, "only constants are allowed in a list")

    def _check_pattern(self, node: ast.Call) -> None:
        """``.str.contains(pat)``: a regular expression that could backtrack exponentially is refused."""
        regex = next((k.value for k in node.keywords if k.arg == "regex"), None)
        if isinstance(regex, ast.Constant) and regex.value is False:
            return
        pat = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "pat"), None)
        if isinstance(pat, ast.Constant) and isinstance(pat.value, str) and _backtracks(pat.value):
            raise self.fail(
                node, "a pattern that repeats a repeated group (catastrophic backtracking) is not allowed"
            )

    def visit_List(self, node: ast.List) -> ast.AST:
        return self._constants(node)

    def visit_Tuple(self, node: ast.Tuple) -> ast.AST:
        return self._constants(node)

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        if not isinstance(node.op, _BINOPS):
            raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")
        exponent = _number(node.right)
        if isinstance(node.op, ast.Pow) and exponent is not None and abs(exponent) > MAX_EXPONENT:
            raise self.fail(node, f"exponent {exponent} is larger than {MAX_EXPONENT}")
        if (
            isinstance(node.op, ast.Mod)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
        ):
            raise self.fail(node, "% on strings (formatting) is not allowed")
        node.left, node.right = self.visit(node.left), self.visit(node.right)
        guard = _GUARDED.get(type(node.op))
        if guard is not None:  # evaluated through a function that bounds the size of its result
            return ast.copy_location(_call(guard, [node.left, node.right]), node)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not | ast.Invert):
            return ast.copy_location(_call("_op_not", [operand]), node)
        node.operand = operand
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        fn = "_op_and" if isinstance(node.op, ast.And) else "_op_or"
        return ast.copy_location(_call(fn, [self.visit(v) for v in node.values]), node)

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        left = self.visit(node.left)
        parts: list[ast.expr] = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if not isinstance(op, _CMPOPS):
                hint = (
                    " (use .isna() / .notna() for missing values)"
                    if isinstance(op, ast.Is | ast.IsNot)
                    else ""
                )
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed{hint}")
            if isinstance(op, ast.In | ast.NotIn):
                values = self._constants(comparator)
                parts.append(_call("_op_isin", [left, values, ast.Constant(isinstance(op, ast.NotIn))]))
                right = values
            else:
                right = self.visit(comparator)
                parts.append(ast.Compare(left=left, ops=[op], comparators=[right]))
            left = right
        return ast.copy_location(parts[0] if len(parts) == 1 else _call("_op_and", parts), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        if isinstance(func, ast.Name):
            if func.id not in _FUNCTIONS:
                raise self.fail(node, f"unknown function {func.id!r}")
            if node.keywords:
                raise self.fail(node, f"function {func.id!r} takes no keyword arguments")
            if func.id == "where" and len(node.args) != 3:
                raise self.fail(node, "where() takes exactly 3 arguments (cond, a, b)")
            new = _call(f"_fn_{func.id}", [self.visit(a) for a in node.args])
            return ast.copy_location(new, node)
        if not isinstance(func, ast.Attribute):
            raise self.fail(node, "only whitelisted functions and Series methods can be called")
        owner = func.value
        if isinstance(owner, ast.Attribute) and owner.attr == "str":
            if func.attr not in _STR_METHODS:
                raise self.fail(node, f"string method {func.attr!r} is not allowed")
            target = ast.Attribute(value=self.visit(owner.value), attr="str", ctx=ast.Load())
        elif func.attr in _METHODS:
            target = self.visit(owner)
        else:
            raise self.fail(node, f"method {func.attr!r} is not allowed")
        if func.attr == "isin":
            if len(node.args) != 1 or node.keywords:
                raise self.fail(node, "isin() takes one list of constants")
            args = [self._constants(node.args[0])]
        elif func.attr == "astype":
            arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
            if not (isinstance(arg, ast.Constant) and arg.value in _ASTYPES):
                raise self.fail(node, f"astype() takes one of {sorted(_ASTYPES)}")
            args = [arg]
        else:
            args = [self.visit(a) for a in node.args]
        if func.attr == "contains":
            self._check_pattern(node)
        keywords = [ast.keyword(arg=k.arg, value=self.visit(k.value)) for k in node.keywords]
        if any(k.arg is None for k in node.keywords):
            raise self.fail(node, "**kwargs are not allowed")
        attr = ast.Attribute(value=target, attr=func.attr, ctx=ast.Load())
        return ast.copy_location(ast.Call(func=attr, args=args, keywords=keywords), node)


def _number(node: ast.AST) -> float | int | None:
    """The value of a (possibly negated) numeric constant node, else ``None``."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign, node = (-sign if isinstance(node.op, ast.USub) else sign), node.operand
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return sign * node.value
    return None


def _cut(text: str, limit: int = 120) -> str:
    """``text`` as received: a long one is cut and its length given, so an error stays one line."""
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit // 2]}… ({len(text):,} characters)"


def _shown(text: str, limit: int = 120) -> str:
    """``text`` quoted for an error message, cut like :func:`_cut`."""
    text = str(text)
    return repr(text) if len(text) <= limit else f"{text[: limit // 2]!r}… ({len(text):,} characters)"


def _check_size(tree: ast.AST, expr: str, field: str) -> None:
    """Refuse a tree beyond :data:`MAX_NODES` or :data:`MAX_DEPTH`, walked without recursion."""
    nodes, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            what = (
                f"more than {MAX_NODES:,} nodes" if nodes > MAX_NODES else f"nesting deeper than {MAX_DEPTH}"
            )
            raise DesignError(
                f"expression {_shown(expr)} is too large: {what}",
                field=field,
                received=_cut(expr),
                expected=f"at most {MAX_NODES:,} nodes nested at most {MAX_DEPTH} deep",
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


_NOT_CONSTANT = object()


def _check_constants(node: ast.AST, expr: str, field: str) -> Any:
    """Compute every constant subexpression through the guarded operators, refusing those that
    exceed a bound (``10**10**10``, ``'a' * 10**8``) before any data is read.

    Returns the value of ``node`` if it is constant, else ``_NOT_CONSTANT``. Recursion is safe:
    :func:`_check_size` has bounded the depth already.
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _check_constants(node.operand, expr, field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
        return _NOT_CONSTANT
    if isinstance(node, ast.List | ast.Tuple):
        values = [_check_constants(e, expr, field) for e in node.elts]
        return _NOT_CONSTANT if any(v is _NOT_CONSTANT for v in values) else values
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = _check_constants(node.left, expr, field), _check_constants(node.right, expr, field)
        if left is _NOT_CONSTANT or right is _NOT_CONSTANT:
            return _NOT_CONSTANT
        try:
            return _FOLD[type(node.op)](left, right)
        except _LimitError as exc:
            raise DesignError(
                f"expression {_shown(expr)} is refused: {exc}",
                field=field,
                received=_cut(ast.get_source_segment(expr, node) or expr),
                expected="an expression whose results stay within the resource limits",
            ) from None
        except Exception:  # division by zero, a type error: evaluation reports it with the data
            return _NOT_CONSTANT
    for child in ast.iter_child_nodes(node):
        _check_constants(child, expr, field)
    return _NOT_CONSTANT


def _backtracks(pattern: str) -> bool:
    """Whether ``pattern`` repeats a group that itself repeats (``(a+)+``, ``(.*x)*``, ``(a|b*){9}``).

    Such patterns backtrack exponentially on strings that almost match; Python's ``re`` has
    no time limit, so they are refused rather than run on every row.
    """
    return _NESTED_QUANTIFIER.search(pattern) is not None


def _call(name: str, args: list[ast.expr]) -> ast.Call:
    return ast.Call(func=ast.Name(id=name, ctx=ast.Load()), args=args, keywords=[])


def parse_expression(expr: str, *, field: str) -> ParsedExpression:
    """Parse and validate ``expr``; raise :class:`DesignError` naming ``field`` if it is not allowed.

    >>> parse_expression("__import__('os')", field="data.label")
    Traceback (most recent call last):
    ...
    mlsd.errors.DesignError: data.label: unknown function '__import__' in expression "__import__('os')" \
(received "__import__('os')"; expected columns, ...)
    """
    if not isinstance(expr, str) or not expr.strip():
        raise DesignError("empty expression", field=field, received=expr, expected="e.g. 'arr_delay > 15'")
    if len(expr) > MAX_CHARS:
        raise DesignError(
            "expression is too long",
            field=field,
            received=_cut(expr),
            expected=f"at most {MAX_CHARS:,} characters",
        )
    backticks: dict[str, str] = {}

    def _quote(m: re.Match[str]) -> str:
        ident = f"_bt_{len(backticks)}_"
        backticks[ident] = m.group(1)
        return ident

    source = _BACKTICK.sub(_quote, expr.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise DesignError(
            f"invalid expression syntax at position {exc.offset}: {exc.msg}",
            field=field,
            received=_cut(expr),
            expected="a Python-like expression over columns, e.g. 'arr_delay > 15'",
        ) from None
    except (RecursionError, MemoryError, ValueError) as exc:
        # Python's own parser gives up on deeply nested input (10,000 unary minuses) this way
        raise DesignError(
            f"expression cannot be parsed: {type(exc).__name__}: {str(exc)[:120]}",
            field=field,
            received=_cut(expr),
            expected=f"an expression nested at most {MAX_DEPTH} deep",
        ) from None
    _check_size(tree, source, field)
    _check_constants(tree, source, field)
    transformer = _Transformer(source, field, backticks)
    tree = ast.fix_missing_locations(transformer.visit(tree))
    columns = transformer.names
    code = compile(tree, f"<{field}>", "eval")
    return ParsedExpression(
        expr=expr,
        field=field,
        columns=frozenset(columns),
        _code=code,
        _names={ident: col for col, ident in columns.items()},
    )


@functools.lru_cache(maxsize=256)
def _parse_cached(expr: str, field: str) -> ParsedExpression:
    return parse_expression(expr, field=field)


def evaluate_expression(df: pd.DataFrame, expr: str, *, field: str = "expression") -> pd.Series:
    """Evaluate ``expr`` on ``df`` (vectorised) and return a Series aligned with ``df.index``.

    The parse is cached: served pipelines evaluate the same few expressions on every request.
    """
    parsed = _parse_cached(expr, field) if isinstance(expr, str) else parse_expression(expr, field=field)
    return parsed.evaluate(df)
