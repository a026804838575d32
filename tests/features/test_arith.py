"""derive_numbers gives exactly what evaluate_expression (pandas) gives, for every expression it takes.

Hypothesis writes expressions from the grammar derive_numbers accepts (and a little beyond it) over
int64 and float64 columns with NaN, zeros, negatives and large values; whenever derive_numbers
answers, its arrays must equal pandas' Series bit for bit, dtype included.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.data import evaluate_expression
from mlsd.features._arith import derive_numbers, numeric_code

_constants = st.one_of(
    st.integers(min_value=-1000, max_value=1000),
    st.sampled_from([0, 1, -1, 100, 0.5, -2.25, 1e-300, 2**52, 0.0, -0.0]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
_ops = ["+", "-", "*", "/", "//", "%", "**"]


def _expressions(names: list[str]) -> st.SearchStrategy[str]:
    leaf = st.one_of(st.sampled_from(names), _constants.map(repr))

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(_ops), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        return st.one_of(binary, inner.map(lambda e: f"-({e})"))

    return st.recursive(leaf, extend, max_leaves=6)


_values = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 1, -1, 7, 2359, 515]),
)


@st.composite
def _columns(draw: st.DrawFn) -> dict[str, np.ndarray]:
    n = draw(st.integers(min_value=1, max_value=20))
    ints = np.array(draw(st.lists(_values, min_size=n, max_size=n)), dtype=np.int64)
    floats = np.array(
        draw(
            st.lists(
                st.one_of(
                    st.floats(allow_infinity=True, allow_nan=True), st.sampled_from([0.0, np.nan, -3.5])
                ),
                min_size=n,
                max_size=n,
            )
        ),
        dtype=np.float64,
    )
    return {"a": ints, "b": floats, "c": ints[::-1].copy()}


@settings(max_examples=500, deadline=None)
@given(columns=_columns(), exprs=st.lists(_expressions(["a", "b", "c"]), min_size=1, max_size=3))
def test_numpy_derivation_equals_pandas(columns: dict[str, np.ndarray], exprs: list[str]) -> None:
    expressions = {f"d{i}": e for i, e in enumerate(exprs)}
    got = derive_numbers(expressions, columns)
    if got is None:
        return  # pandas' job: nothing to compare
    frame = pd.DataFrame(columns)
    for name, expr in expressions.items():
        expected = evaluate_expression(frame, expr, field=name)
        frame[name] = expected
        assert got[name].dtype == expected.dtype, expr
        np.testing.assert_array_equal(got[name], expected.to_numpy(), strict=True, err_msg=expr)


def test_plain_arithmetic_is_taken_and_the_rest_left_to_pandas() -> None:
    for expr in ["dep // 100", "a * 2 + b", "-(a - 1.5) / 4", "a % 7", "a + b * c"]:
        assert numeric_code(expr) is not None, expr
    # division by zero (pandas fills it), powers, methods, functions, comparisons, backticks, constants
    for expr in [
        "a // 0",
        "a / 0.0",
        "a % -0",
        "a ** 2",
        "a.notna()",
        "log(a)",
        "a > 1",
        "`a b` + 1",
        "3",
        "a // b",
    ]:
        assert numeric_code(expr) is None, expr
    ints = np.array([515, 1930])
    assert derive_numbers({"h": "dep // 100"}, {"dep": ints.astype(object)}) is None  # not a number array
    assert derive_numbers({"h": "dep // 100"}, {"dep": ints.astype(bool)}) is None
    assert derive_numbers({"h": "dep // 100"}, {}) is None  # an unknown column: pandas names it
    chained = derive_numbers({"h": "dep // 100", "half": "h / 2"}, {"dep": ints})
    assert chained is not None and chained["half"].tolist() == [2.5, 9.5]


@pytest.mark.parametrize("expr", ["a // 100", "(b - 3) * 2.5", "a / 7 + b"])
def test_typical_derivations_really_take_the_numpy_path(expr: str) -> None:
    columns = {"a": np.array([515, -1930, 0]), "b": np.array([1.5, np.nan, -0.0])}
    got = derive_numbers({"x": expr}, columns)
    assert got is not None
    expected = evaluate_expression(pd.DataFrame(columns), expr)
    np.testing.assert_array_equal(got["x"], expected.to_numpy(), strict=True)
