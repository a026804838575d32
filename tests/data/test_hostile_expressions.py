"""Hostile expressions: escapes and resource exhaustion are refused with one clear DesignError.

Each is refused either when parsed (length, tree size and depth, constant subexpressions computed
through the guarded operators) or when evaluated (the guarded ``** * + %``), never by hanging,
exhausting memory or a bare ``RecursionError``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mlsd.cli import app
from mlsd.data.expressions import (
    MAX_CHARS,
    MAX_DEPTH,
    MAX_EXPONENT,
    MAX_NODES,
    evaluate_expression,
    parse_expression,
)
from mlsd.errors import DesignError


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "x": [1.0, 2.0, 3.0],
            "n": [1, 2, 3],
            "s": pd.array(["a", "bb", "ccc"], dtype="string[pyarrow]"),
            "o": ["a", "bb", "ccc"],
        }
    )


# refused at parse time: no data needed (``mlsd validate --no-data`` already says so)
AT_PARSE = {
    # escapes
    "import": ("__import__('os').system('true')", "not allowed"),
    "import-call": ("__import__('os')", "unknown function"),
    "dunder-attr": ("x.__class__.__bases__", "not allowed"),
    "private-name": ("_col_0 + 1", "'_'"),
    "lambda": ("(lambda: 1)()", "only whitelisted"),
    "comprehension": ("[c for c in x]", "not allowed"),
    "walrus": ("(y := 1)", "not allowed"),
    "fstring": ("f'{x}'", "not allowed"),
    "subscript": ("x[0]", "not allowed"),
    "getattr-call": ("getattr(x, 'values')", "unknown function"),
    "eval": ("eval('1')", "unknown function"),
    "starred-kwargs": ("x.clip(**{'lower': 0})", "Dict is not allowed"),
    "method-chain": ("x.to_numpy()", "not allowed"),
    "str-method": ("o.str.repeat(10**8)", "not allowed"),
    "astype-object": ("x.astype(object)", "astype()"),
    "bytes": ("b'abc' == x", "bytes"),
    "is-none": ("x is None", "isna"),
    "shift": ("1 << 10**8", "LShift"),
    # exponent and integer size
    "pow-tower": ("10**10**10", "exponent"),
    "pow-2-10-8": ("2**10**8", "exponent"),
    "pow-constant-big": ("x ** 100000", "exponent"),
    "pow-negative-big": ("x ** -100000", "exponent"),
    "pow-nested-ints": ("(10**1000)**1000", "bits"),
    "pow-in-where": ("where(x > 1, 9**9**9, 0)", "exponent"),
    "pow-in-list": ("x.isin([1, 2]) & (3**3**3**3 > 1)", "exponent"),
    # string and list repetition
    "str-times-1e8": ("'a' * 10**8", "repeating a str"),
    "str-times-right": ("10**8 * 'a'", "repeating a str"),
    "list-times": ("[1, 2] * 10**8", "repeating a list"),
    "tuple-times": ("(1, 2) * 10**8", "repeating a list"),
    "str-concat": ("'a' * 99999 + 'b' * 99999", "concatenating"),
    "str-format": ("'%0100000000d' % 1", "formatting"),
    "fillna-bomb": ("o.fillna('z' * 10**7)", "repeating a str"),
    # size of the tree and of the text
    "unary-minus-10000": ("-" * 10_000 + "1", "too long"),
    "unary-minus-5000": ("-" * 5_000 + "1", "RecursionError"),  # Python's parser gives up
    "unary-minus-500": ("-" * 500 + "1", "nesting deeper"),
    "not-2000": ("not " * 2_000 + "x", "nesting deeper"),
    "invert-3000": ("~" * 3_000 + "x", "RecursionError"),
    "sum-100000": ("+".join(["x"] * 100_000), "too long"),
    "sum-2000": ("+".join(["x"] * 2_000), "nesting deeper"),
    "or-100000": (" or ".join(["x > 1"] * 100_000), "too long"),
    "or-1200": (" or ".join(["x>1"] * 1_200), "nodes"),
    "and-chain": (" & ".join(["(x>1)"] * 1_000), "too large"),
    "compare-chain": ("<".join(["x"] * 2_500), "nodes"),
    "big-isin": ("x.isin([" + ",".join(["1"] * 2_500) + "])", "nodes"),
    "parens-300": ("(" * 300 + "x" + ")" * 300, "nested parentheses"),
    "deep-nesting": ("-" * 300 + "x", "nesting deeper"),
    "huge-int-literal": ("x > 1" + "0" * 5_000, "digits"),
    # regular expressions that backtrack exponentially on near-matches
    "redos-nested-plus": ("o.str.contains('(a+)+$')", "catastrophic backtracking"),
    "redos-keyword": ("o.str.contains(pat='(.*a){20}')", "catastrophic backtracking"),
    "redos-words": ("o.str.contains('^(\\\\w+\\\\s?)*$')", "catastrophic backtracking"),
    "null-byte": ("x > 1\x00", "null"),
}

# refused at evaluation: the size depends on the data
AT_EVALUATION = {
    "arrow-strings-times-1e8": ("s * 10**8", "repeating the strings"),
    "object-strings-times-1e8": ("o * 10**8", "repeating the strings"),
    "strings-times-column": ("o * (n * 10**7)", "repeating the strings"),
    "strings-concat-bomb": ("o * 10**7 + o * 10**7", "repeating the strings"),
    "string-column-format": ("o % 5", "formatting"),
    "int-pow-column-exponent": ("2 ** (n * 10**6)", None),
}


@pytest.mark.parametrize(("expr", "says"), AT_PARSE.values(), ids=AT_PARSE.keys())
def test_refused_when_parsed(expr: str, says: str) -> None:
    with pytest.raises(DesignError) as info:
        parse_expression(expr, field="data.label")
    err = info.value
    assert err.field == "data.label"
    assert says in str(err), str(err)
    assert "\n" not in str(err) and len(str(err)) < 1_000


@pytest.mark.parametrize(("expr", "says"), AT_EVALUATION.values(), ids=AT_EVALUATION.keys())
def test_refused_when_evaluated(expr: str, says: str | None, frame: pd.DataFrame) -> None:
    parsed = parse_expression(expr, field="data.derive.z")  # the size is only known with the data
    if says is None:  # numpy arithmetic on a column: bounded by the column, it wraps or overflows
        assert len(parsed.evaluate(frame)) == len(frame)
        return
    with pytest.raises(DesignError) as info:
        parsed.evaluate(frame)
    assert says in str(info.value), str(info.value)
    assert info.value.field == "data.derive.z"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("x ** 2", [1.0, 4.0, 9.0]),
        (f"n ** {MAX_EXPONENT}", None),
        ("2 ** 64 > x", [True, True, True]),
        ("o * 2 == 'aa'", [True, False, False]),
        ("(o + '!').str.len()", [2, 3, 4]),
        ("'a' * 3 == o", [False, False, False]),
        ("n % 2", [1, 0, 1]),
        ("+".join(["x"] * 50), [50.0, 100.0, 150.0]),
        (" or ".join(["x > 2"] * 200), [False, False, True]),
        ("o.str.contains('b+')", [False, True, False]),
        ("o.str.contains('(a+)+$', regex=False)", [False, False, False]),
    ],
    ids=[
        "square",
        "max-exponent",
        "big-int-constant",
        "repeat-2",
        "concat",
        "str-const",
        "mod",
        "sum-50",
        "or-200",
        "regex",
        "literal",
    ],
)
def test_ordinary_expressions_still_work(expr: str, expected: list | None, frame: pd.DataFrame) -> None:
    out = evaluate_expression(frame, expr)
    if expected is not None:
        assert out.tolist() == expected


def test_limits_are_consistent() -> None:
    assert MAX_NODES * 2 < MAX_CHARS * 2 and MAX_DEPTH < 1000  # far from Python's recursion limit
    with pytest.raises(DesignError, match="too long"):
        parse_expression("x" * (MAX_CHARS + 1), field="f")
    parse_expression("x" * MAX_CHARS, field="f")  # the bound itself is accepted


def test_parser_recursion_error_becomes_a_design_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ast

    def deep(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded during compilation")

    monkeypatch.setattr(ast, "parse", deep)
    with pytest.raises(DesignError, match="cannot be parsed: RecursionError"):
        parse_expression("x > 1", field="data.filter")


def test_evaluation_memory_error_becomes_a_design_error(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlsd.data import expressions

    def exhausted(x: object) -> object:
        raise MemoryError

    monkeypatch.setitem(expressions._RUNTIME, "_fn_sqrt", exhausted)
    with pytest.raises(DesignError, match="MemoryError"):
        evaluate_expression(frame, "sqrt(x) > 1", field="data.filter")


def test_inf_results_are_values_not_errors(frame: pd.DataFrame) -> None:
    out = evaluate_expression(frame, "exp(x * 1000)")
    assert np.isinf(out).all()


runner = CliRunner()


@pytest.mark.parametrize("key", ["pow-tower", "str-times-1e8", "unary-minus-5000", "or-1200", "import"])
def test_validate_refuses_them_without_data(key: str, tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "flights" / "design.yaml"
    expr, says = AT_PARSE[key]
    text = example.read_text().replace('label: "arr_delay > 15"', f"label: {json.dumps(expr)}")
    path = tmp_path / "design.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert ": data.label: " in lines[0] and says in lines[0], lines[0]


def test_a_sum_of_200_columns_is_an_ordinary_expression() -> None:
    # each term of a chain nests one level deeper: the depth bound must leave room for wide sums
    frame = pd.DataFrame({f"c{i}": [1.0, 2.0] for i in range(200)})
    total = evaluate_expression(frame, " + ".join(frame.columns))
    assert total.tolist() == [200.0, 400.0]
