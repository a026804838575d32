"""The annotation queue: export, import with validation, one transaction, the workspace database."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from mlsd.errors import MlsdError
from mlsd.store import PredictionLog
from mlsd.store.annotation_queue import AnnotationQueue

LABELS = {"android": True, "iphone": False}


@pytest.fixture
def queue(tmp_path):
    q = AnnotationQueue.for_workspace(tmp_path)
    items = pd.DataFrame({"id": ["t1", "t2", "t3"], "text": ["Crooked!", "Join us", None], "n": [1, 2, 3]})
    assert q.enqueue(items, key="id", strategy="margin", scores=[0.9, 0.8, 0.7]) == 3
    yield q
    q.close()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_fill_in_and_import_round_trips(queue, tmp_path, suffix):
    path = tmp_path / f"queue{suffix}"
    assert queue.export(path) == 3
    frame = pd.read_csv(path, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(path)
    assert frame["item_key"].tolist() == ["t1", "t2", "t3"] and "text" in frame.columns
    frame.loc[0, ["answer", "annotator"]] = ["Android", "ann"]
    frame.loc[1, "answer"] = "iphone"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    assert queue.import_answers(path, labels=LABELS) == 2
    assert queue.answers() == {"t1": True, "t2": False}
    read = queue.read().set_index("item_key")
    assert read.loc["t1", "annotator"] == "ann" and pd.isna(read.loc["t3", "text"])
    assert queue.export(tmp_path / "left.csv") == 1  # only what is still pending


def test_a_bad_file_stores_nothing_and_names_row_and_column(queue):
    bad_label = pd.DataFrame({"item_key": ["t1", "t2"], "answer": ["android", "blackberry"]})
    with pytest.raises(MlsdError, match=r"answer: not an allowed label \(row 2") as exc:
        queue.import_answers(bad_label, labels=LABELS)
    assert exc.value.received == "blackberry"
    unknown = pd.DataFrame({"item_key": ["t1", "zz"], "answer": ["android", "iphone"]})
    with pytest.raises(MlsdError, match=r"item_key: not an item of the queue \(row 2"):
        queue.import_answers(unknown, labels=LABELS)
    with pytest.raises(MlsdError, match="answer: the answers lack a column"):
        queue.import_answers(pd.DataFrame({"item_key": ["t1"]}), labels=LABELS)
    assert queue.answers() == {}  # t1 of the rejected files was not stored


def test_queueing_again_keeps_the_answer(queue):
    queue.import_answers(pd.DataFrame({"item_key": ["t1"], "answer": ["android"]}), labels=LABELS)
    again = pd.DataFrame({"id": ["t1", "t4"], "text": ["Crooked!", "New"], "n": [1, 4]})
    assert queue.enqueue(again, key="id", strategy="entropy", scores=[0.5, 0.4]) == 1
    assert queue.answers() == {"t1": True}


def test_the_queue_lives_in_the_prediction_log_database(queue, tmp_path):
    with PredictionLog.for_workspace(tmp_path) as log:  # the log opens the same file, untouched
        assert log.count_predictions() == 0
    tables = sa.inspect(sa.create_engine(f"sqlite:///{tmp_path / 'predictions.db'}")).get_table_names()
    assert {"annotation_queue", "predictions"} <= set(tables)
