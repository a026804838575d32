"""data.privacy: detection, the treatments, the key, the spec's and the design's errors."""

from __future__ import annotations

import hashlib
import hmac

import numpy as np
import pandas as pd
import pytest

from mlsd._data_spec import PrivacySpec
from mlsd._design_checks import check_design
from mlsd.data.privacy import (
    PSEUDONYM_HEX,
    RowPrivacy,
    apply_privacy,
    detect_personal_columns,
    generalise_bins,
    generalise_chars,
    luhn_valid,
    privacy_key,
    pseudonymise,
)
from mlsd.design import Design
from mlsd.errors import DesignError
from support import tiny_design

KEY = b"0123456789abcdef-test-key"


def _luhn_card(prefix: str, rng: np.random.Generator, length: int = 16) -> str:
    """A Luhn-valid number: random digits after ``prefix``, then the check digit."""
    body = prefix + "".join(map(str, rng.integers(0, 10, length - len(prefix) - 1)))
    total = 0
    for i, ch in enumerate(reversed(body)):  # the check digit goes right of these
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


# -- pseudonymise ------------------------------------------------------------------------------------


def test_pseudonym_is_hmac_sha256_of_the_value_text_truncated() -> None:
    values = pd.Series(["ann@example.com", "C-1001", 12345, 12345.0, None])
    got = pseudonymise(values, KEY).tolist()
    want = [
        hmac.new(KEY, t.encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_HEX]
        for t in ["ann@example.com", "C-1001", "12345", "12345"]
    ]
    assert got[:4] == want and got[4] is None
    assert got[2] == got[3]  # a CSV's float 12345.0 and a request's 12345 are one customer


def test_pseudonyms_depend_on_the_key_and_map_equal_values_together() -> None:
    values = pd.Series(["a", "b", "a"] * 1000)
    one = pseudonymise(values, KEY)
    assert one.nunique() == 2 and (one.iloc[0::3] == one.iloc[0]).all()
    assert not (one == pseudonymise(values, b"another key, also long")).any()


def test_rows_are_treated_as_the_frame_is() -> None:
    spec = PrivacySpec.model_validate(
        {
            "columns": {
                "email": "drop",
                "cid": "pseudonymise",
                "age": {"generalise": {"bins": [0, 18, 65, 120]}},
                "pc": {"generalise": {"keep_chars": 3}},
            }
        }
    )
    frame = pd.DataFrame(
        {"email": ["a@b.co", "c@d.co"], "cid": [7, 8], "age": [17.0, 70.0], "pc": ["SW1A", "E14"]}
    )
    treated, _ = apply_privacy(frame, spec, KEY, detect_columns=[])
    rows = RowPrivacy(spec, KEY).treat_rows(
        [
            {"email": "a@b.co", "cid": 7, "age": 17, "pc": "SW1A"},
            {"email": "c@d.co", "cid": 8, "age": 70, "pc": "E14"},
        ]
    )
    assert rows == treated.to_dict("records")
    assert all("email" not in r for r in rows)
    # invalid values are left for the validator; text in a binned column is no number
    odd = RowPrivacy(spec, KEY).treat_rows([{"cid": {"x": 1}, "age": "17"}])[0]
    assert odd == {"cid": {"x": 1}, "age": None}


# -- generalise ---------------------------------------------------------------------------------------


def test_bins_label_each_value_with_its_interval() -> None:
    got = generalise_bins(
        pd.Series([0, 17, 18, 29.9, 30, 64, 65, 120, -1, 121, np.nan]), [0, 18, 30, 65, 120]
    )
    assert got.tolist() == [
        "[0, 18)",
        "[0, 18)",
        "[18, 30)",
        "[18, 30)",
        "[30, 65)",
        "[30, 65)",
        "[65, 120]",
        "[65, 120]",
        None,
        None,
        None,
    ]


def test_keep_chars_truncates_text() -> None:
    assert generalise_chars(pd.Series(["SW1A 1AA", "EC1", None]), 3).tolist() == ["SW1", "EC1", None]


@pytest.mark.parametrize("bins", [[0, 18, 18, 65], [65, 18], [1]])
def test_bins_that_do_not_increase_are_refused(bins: list[float]) -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        PrivacySpec.model_validate({"columns": {"age": {"generalise": {"bins": bins}}}})


def test_keep_needs_a_reason_and_unknown_treatments_are_refused() -> None:
    with pytest.raises(ValueError, match="keep` needs a reason"):
        PrivacySpec.model_validate({"columns": {"tailnum": "keep"}})
    with pytest.raises(ValueError, match="pseudonymise"):
        PrivacySpec.model_validate({"columns": {"tailnum": "hash"}})


# -- detection ----------------------------------------------------------------------------------------


def test_detection_finds_planted_emails_phones_cards_and_ips_and_not_random_digits() -> None:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "contact": [f"user{i}.x@mail{i % 7}.example.com" for i in range(n)],
            "tel": [f"+44 20 7946 {i:04d}" for i in range(n)],
            "pay": [_luhn_card("4", rng) for _ in range(n)],
            "pay_int": [int(_luhn_card("5", rng)) for _ in range(n)],
            "host": [f"10.{i % 256}.{i // 256}.7" for i in range(n)],
            "digits": ["".join(map(str, rng.integers(0, 10, 16))) for _ in range(n)],
            "ids": rng.integers(10**15, 10**16, n),
            "day": pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d"),
            "carrier": rng.choice(["AA", "UA", "DL"], n),
        }
    )
    found = {d.column: d.kind for d in detect_personal_columns(frame)}
    assert found == {
        "contact": "email",
        "tel": "phone",
        "pay": "card",
        "pay_int": "card",
        "host": "ip_address",
    }


def test_detection_reads_names_and_a_bounded_sample() -> None:
    frame = pd.DataFrame(
        {
            "first_name": ["Ann", "Bob"],
            "Surname": ["Lee", "Kim"],
            "customer_ssn": [1, 2],
            "username": ["a", "b"],
            "tailnum": ["N1", "N2"],
        }
    )
    found = {d.column: (d.kind, d.by) for d in detect_personal_columns(frame)}
    assert found == {
        "first_name": ("name", "name"),
        "Surname": ("name", "name"),
        "customer_ssn": ("national_id", "name"),
        "username": ("name", "name"),
    }
    big = pd.DataFrame({"mail": [f"u{i}@example.com" for i in range(5000)]})
    (d,) = detect_personal_columns(big, sample=200)
    assert d.sampled == 200 and d.share == 1.0


def test_luhn_check_against_known_numbers() -> None:
    # the test numbers card networks publish, and each with its last digit changed
    valid = ["4111111111111111", "5500005555555559", "378282246310005", "6011111111111117"]
    broken = [v[:-1] + str((int(v[-1]) + 1) % 10) for v in valid]
    assert luhn_valid(pd.Series(valid + broken)).tolist() == [True] * 4 + [False] * 4


def test_an_unnamed_personal_column_is_refused_naming_it_and_the_fix() -> None:
    frame = pd.DataFrame({"contact": ["ann@example.com", "bob@example.org"], "x": [1, 2]})
    with pytest.raises(DesignError) as err:
        apply_privacy(frame, PrivacySpec(), KEY)
    assert err.value.field == "data.privacy.columns" and err.value.received == ["contact"]
    assert "contact" in err.value.message and "email in 100%" in err.value.message  # the kind, no value
    assert "ann@example.com" not in str(err.value)
    assert "keep" in (err.value.expected or "")
    treated, report = apply_privacy(frame, PrivacySpec(detect=False), KEY)  # said: no detection
    assert treated.equals(frame) and report.columns == []


def test_the_report_says_what_changed_and_holds_no_value() -> None:
    spec = PrivacySpec.model_validate({"columns": {"contact": "pseudonymise", "x": {"keep": "a count"}}})
    frame = pd.DataFrame({"contact": ["ann@example.com", None, "ann@example.com"], "x": [1, 2, 3]})
    _, report = apply_privacy(frame, spec, KEY)
    (c, x) = report.columns
    assert (c.treatment, c.values_changed, x.values_changed, x.detail) == ("pseudonymise", 2, 0, "a count")
    assert c.detected is not None and "email" in c.detected
    assert "ann@" not in str(report.to_dict())


# -- the key ------------------------------------------------------------------------------------------


def test_a_missing_or_short_key_names_the_variable_and_never_the_key() -> None:
    spec = PrivacySpec(key_env="MY_KEY")
    with pytest.raises(DesignError) as err:
        privacy_key(spec, {})
    assert err.value.field == "data.privacy.key_env" and "MY_KEY" in str(err.value)
    with pytest.raises(DesignError) as err:
        privacy_key(spec, {"MY_KEY": "short-secret"})
    assert "12 characters" in str(err.value) and "short-secret" not in str(err.value)
    assert "short-secret" not in repr(RowPrivacy(spec, b"short-secret"))


# -- the design ------------------------------------------------------------------------------------


def _design(privacy: dict, **features: object) -> Design:
    d = tiny_design()
    d["data"]["privacy"] = privacy
    d["data"]["derive"] = {"power": "hp / wt"}
    d["features"] = {"numeric": ["mpg", "power"], **features}
    d["models"]["slices"] = ["gear"]
    return Design.model_validate(d)


@pytest.mark.parametrize(
    ("column", "reader"),
    [("mpg", "features.numeric[0]"), ("hp", "data.derive.power"), ("gear", "models.slices[0]")],
)
def test_validate_refuses_dropping_a_column_the_design_reads(column: str, reader: str) -> None:
    with pytest.raises(DesignError) as err:
        check_design(_design({"columns": {column: "drop"}}))
    assert err.value.field == f"data.privacy.columns.{column}" and reader in err.value.message


def test_validate_refuses_treatments_a_numeric_feature_or_the_label_cannot_take() -> None:
    with pytest.raises(DesignError) as err:
        check_design(_design({"columns": {"mpg": {"generalise": {"bins": [0, 20, 40]}}}}))
    assert err.value.field == "data.privacy.columns.mpg" and "features.categorical" in (
        err.value.expected or ""
    )
    with pytest.raises(DesignError) as err:
        check_design(_design({"columns": {"power": "pseudonymise"}}))
    assert "derived" in err.value.message and "hp" in (err.value.expected or "")
    target = _design({}).goals.target
    with pytest.raises(DesignError, match="label") as err:
        check_design(_design({"columns": {target: "drop"}}))
    check_design(_design({"columns": {"cyl": "pseudonymise", "vs": "drop"}}, categorical=["cyl"]))


def test_build_refuses_an_unknown_column_and_a_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsd.data import prepare_data

    monkeypatch.setenv("MLSD_PSEUDONYM_KEY", KEY.decode())
    with pytest.raises(DesignError) as err:
        prepare_data(_design({"columns": {"e_mail": "drop"}}))
    assert err.value.field == "data.privacy.columns.e_mail" and err.value.received == "e_mail"
    monkeypatch.delenv("MLSD_PSEUDONYM_KEY")
    with pytest.raises(DesignError) as err:
        prepare_data(_design({"columns": {"cyl": "pseudonymise"}}, categorical=["cyl"]))
    assert err.value.field == "data.privacy.key_env" and "MLSD_PSEUDONYM_KEY" in err.value.message


def test_prepared_frame_is_treated_and_the_raw_values_follow_the_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlsd.data import prepare_data

    monkeypatch.setenv("MLSD_PSEUDONYM_KEY", KEY.decode())
    d = tiny_design()
    d["data"]["privacy"] = {"columns": {"cyl": "pseudonymise", "carb": {"generalise": {"bins": [0, 2, 9]}}}}
    d["data"]["sample"] = {"n": 20, "seed": 3}
    d["features"] = {"numeric": ["mpg"], "categorical": ["cyl", "carb"]}
    prepared = prepare_data(Design.model_validate(d))
    frame, raw = prepared.frame, prepared.raw_inputs
    assert raw is not None and list(raw.columns) == ["cyl", "carb"] and raw.index.equals(frame.index)
    assert frame["cyl"].tolist() == pseudonymise(raw["cyl"], KEY).tolist()
    assert frame["carb"].tolist() == generalise_bins(raw["carb"], [0, 2, 9]).tolist()
    assert prepared.privacy is not None and [c.column for c in prepared.privacy.columns] == ["cyl", "carb"]
