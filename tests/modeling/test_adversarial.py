"""models.adversarial: a planted shift between train and test is found (and named), an IID split
gives an AUC of about 0.5 (within its interval), and a missing column is named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd.errors import DataError
from mlsd.modeling.adversarial import adversarial_validation


def _frames(n: int, shift: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def rows(offset: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "steady": rng.normal(0, 1, n),
                "moved": rng.normal(offset, 1, n),
                "carrier": rng.choice(["AA", "UA", "DL"], n),
                "flag": rng.random(n) < 0.3,
            }
        )

    return rows(0.0), rows(shift)


def test_a_planted_shift_is_detected_and_named() -> None:
    train, test = _frames(3_000, shift=1.5)
    result = adversarial_validation(
        train, test, ["steady", "moved", "carrier", "flag"], sample=2_000, fail_above=0.75
    )
    assert result.auc > 0.8 and result.auc_low > 0.75 and result.failed
    assert result.features[0]["feature"] == "moved" and result.features[0]["importance"] > 0.5
    assert result.n_train == result.n_test == 2_000  # subsampled to `sample` rows of each


def test_an_iid_split_gives_an_auc_near_one_half() -> None:
    train, test = _frames(3_000, shift=0.0, seed=1)
    result = adversarial_validation(train, test, ["steady", "moved", "carrier", "flag"], fail_above=0.75)
    assert abs(result.auc - 0.5) < 0.05 and result.auc_low < 0.5 + 0.03 and not result.failed
    assert result.auc_low <= result.auc <= result.auc_high


def test_missing_columns_are_refused_by_name() -> None:
    train, test = _frames(100, shift=0.0)
    with pytest.raises(DataError, match="nope"):
        adversarial_validation(train, test, ["steady", "nope"])
