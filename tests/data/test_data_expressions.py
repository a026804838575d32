from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.data import evaluate_expression, parse_expression
from mlsd.errors import DesignError


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1.0, -2.0, np.nan, 4.0],
            "b": [10, 20, 30, 40],
            "carrier": ["UA", "AA", "DL", None],
            "time hour": [1, 2, 3, 4],
        }
    )


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("a > 0", [True, False, False, True]),
        ("b // 10 % 3", [1, 2, 0, 1]),
        ("-a * 2 + 1", [-1.0, 5.0, np.nan, -7.0]),
        ("b ** 2 / 100", [1.0, 4.0, 9.0, 16.0]),
        ("0 < b <= 30", [True, True, True, False]),
        ("a.isna() or b == 40", [False, False, True, True]),
        ("not (b > 10) and a.notna()", [True, False, False, False]),
        ("(b > 10) & ~(b > 30) | (a < 0)", [False, True, True, False]),
        ("carrier.isin(['UA', 'DL'])", [True, False, True, False]),
        ("carrier in ('UA', 'DL')", [True, False, True, False]),
        ("carrier not in ['UA']", [False, True, True, True]),
        ("a.abs().fillna(0).clip(0, 3)", [1.0, 2.0, 0.0, 3.0]),
        ("b.astype('float') / 4", [2.5, 5.0, 7.5, 10.0]),
        ("carrier.str.len()", [2, 2, 2, np.nan]),
        ("carrier.str.startswith('U') == True", [True, False, False, False]),
        ("carrier.str.contains('a', case=False) == True", [True, True, False, False]),
        ("where(a > 0, log1p(a), -1)", [np.log1p(1.0), -1.0, -1.0, np.log1p(4.0)]),
        ("sqrt(b) * sqrt(b) - exp(log(b))", [0.0, 0.0, 0.0, 0.0]),
        ("abs(a)", [1.0, 2.0, np.nan, 4.0]),
        ("`time hour` * 2", [2, 4, 6, 8]),
        ("b > -5", [True, True, True, True]),
    ],
)
def test_evaluate_is_vectorised_and_correct(df: pd.DataFrame, expr: str, expected: list) -> None:
    out = evaluate_expression(df, expr)
    assert isinstance(out, pd.Series)
    assert out.index.equals(df.index)
    np.testing.assert_allclose(
        out.astype("float64").to_numpy(), np.asarray(expected, dtype="float64"), atol=1e-9
    )


def test_scalar_result_is_broadcast(df: pd.DataFrame) -> None:
    assert evaluate_expression(df, "1 + 1").tolist() == [2, 2, 2, 2]


def test_columns_are_collected() -> None:
    parsed = parse_expression("where(a > 0, log(`time hour`), b.fillna(c))", field="f")
    assert parsed.columns == frozenset({"a", "b", "c", "time hour"})
    # function names in call position are not columns
    assert "log" not in parsed.columns


def test_same_column_plain_and_backticked(df: pd.DataFrame) -> None:
    assert evaluate_expression(df, "b + `b`").tolist() == [20, 40, 60, 80]
    assert parse_expression("b + `b`", field="f").columns == frozenset({"b"})


def test_column_named_like_a_function(df: pd.DataFrame) -> None:
    frame = pd.DataFrame({"log": [1.0, np.e]})
    assert evaluate_expression(frame, "log(log)").round(6).tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("expr", "snippet"),
    [
        ("__import__('os').system('ls')", "__import__('os')"),
        ("a.__class__", "a.__class__"),
        ("(lambda x: x)(a)", "lambda x: x"),
        ("a[0]", "a[0]"),
        ("open('f')", "open('f')"),
        ("a.apply(print)", "a.apply(print)"),
        ("a.str.upper()", "a.str.upper()"),
        ("_private + 1", "_private"),
        ("a is None", "a is None"),
        ("a.isin(b)", "b"),
        ("a.astype('object')", "a.astype('object')"),
        ("[x for x in a]", "[x for x in a]"),
        ("a if b else c", "a if b else c"),
        ("f'{a}'", "f'{a}'"),
        ("a.clip(**b)", "a.clip(**b)"),
        ("where(a, b)", "where(a, b)"),
    ],
)
def test_disallowed_constructs_raise_design_error(expr: str, snippet: str) -> None:
    with pytest.raises(DesignError) as info:
        parse_expression(expr, field="data.label")
    err = info.value
    assert err.field == "data.label"
    assert snippet in err.received
    assert "isna" in err.expected


def test_syntax_error_names_field_expression_and_position() -> None:
    with pytest.raises(DesignError) as info:
        parse_expression("arr_delay >", field="data.label")
    assert info.value.field == "data.label"
    assert info.value.received == "arr_delay >"
    assert "position" in info.value.message


def test_empty_expression() -> None:
    with pytest.raises(DesignError, match="empty"):
        parse_expression("  ", field="data.filter")


def test_unknown_column_suggests_close_matches() -> None:
    frame = pd.DataFrame({"arr_delay": [1.0], "dep_delay": [2.0]})
    with pytest.raises(DesignError) as info:
        evaluate_expression(frame, "arr_dely > 15", field="data.label")
    err = info.value
    assert err.field == "data.label"
    assert err.received == "arr_dely"
    assert "arr_delay" in err.message and "did you mean" in err.message


def test_runtime_type_error_is_a_design_error() -> None:
    frame = pd.DataFrame({"s": ["a", "b"]})
    with pytest.raises(DesignError) as info:
        evaluate_expression(frame, "s - 1", field="features.derived.x")
    assert info.value.field == "features.derived.x"
    assert info.value.received == "s - 1"


def test_label_on_real_flights(flights_all: pd.DataFrame) -> None:
    y = evaluate_expression(flights_all, "arr_delay > 15", field="data.label")
    assert len(y) == len(flights_all)
    assert 0.2 < y.mean() < 0.25
    hour = evaluate_expression(flights_all, "sched_dep_time // 100")
    assert hour.between(0, 23).all()


def test_repeated_evaluation_parses_once(df: pd.DataFrame) -> None:
    from mlsd.data.expressions import _parse_cached

    assert evaluate_expression(df, "b * 3", field="f.cached").tolist() == [30, 60, 90, 120]
    hits = _parse_cached.cache_info().hits
    assert evaluate_expression(df.head(1), "b * 3", field="f.cached").tolist() == [30]
    assert _parse_cached.cache_info().hits == hits + 1
    with pytest.raises(DesignError, match="empty"):
        evaluate_expression(df, None, field="f")  # type: ignore[arg-type]
