"""The design file: parsing, defaults, and errors that name file, line, field, received, expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlsd.design import Design, load_design, parse_duration
from mlsd.errors import DesignError

EXAMPLE = Path(__file__).parents[1] / "examples" / "flights" / "design.yaml"


def test_example_design_loads_every_segment() -> None:
    design = load_design(EXAMPLE)
    assert design.goals.task == "binary"
    assert design.data.split.by == "time"
    assert "dep_delay" in design.features.forbidden
    assert design.models.select.maximize == "roc_auc"
    assert design.deployment.strategy == "canary" and design.deployment.steps == [10, 50, 100]
    assert design.deployment.sticky_by == "tailnum"
    assert design.monitoring.correction == "benjamini_hochberg"
    assert design.workspace_dir() == EXAMPLE.parent.resolve() / ".mlsd" / "flight-delay"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "design.yaml"
    path.write_text(text)
    return path


def _mutate(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE.read_text()
    assert old in text, old
    return _write(tmp_path, text.replace(old, new, 1))


def _line(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_key_names_file_line_and_allowed_keys(tmp_path: Path) -> None:
    path = _mutate(tmp_path, "  calibrate: none", "  calibrate: none\n  calibrat: sigmoid")
    with pytest.raises(DesignError) as info:
        load_design(path)
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), _line(path, "calibrat: sigmoid"), "models.calibrat")
    assert "unknown key" in str(err) and "calibrate" in err.expected


def test_wrong_type_names_field_received_and_expected(tmp_path: Path) -> None:
    path = _mutate(tmp_path, "  calibrate: none", "  calibrate: none\n  bootstrap: many")
    with pytest.raises(DesignError) as info:
        load_design(path)
    err = info.value
    assert err.field == "models.bootstrap" and err.received == "many"
    assert err.line == _line(path, "bootstrap: many")
    assert "int" in (err.expected or "")


def test_bad_choice_lists_options(tmp_path: Path) -> None:
    path = _mutate(tmp_path, "  task: binary", "  task: binry")
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert info.value.field == "goals.task" and info.value.line == _line(path, "task: binry")
    assert "'binary'" in str(info.value)


def test_time_split_dates_must_be_ordered(tmp_path: Path) -> None:
    path = _mutate(tmp_path, "valid_from: 2013-09-01", "valid_from: 2013-12-01")
    with pytest.raises(DesignError, match="must be earlier than test_from"):
        load_design(path)


def test_broken_yaml_gives_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ngoals:\n  task: [binary\n")
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert info.value.line is not None and "not valid YAML" in str(info.value)


def test_missing_segment_is_named(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    path = _write(tmp_path, text.split("# 3. Features")[0])
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert info.value.field in {"features", "models"} and "missing" in str(info.value)


def test_label_cannot_be_a_feature() -> None:
    with pytest.raises(ValueError, match="cannot also be a feature"):
        Design.model_validate(
            {
                "name": "x",
                "goals": {"task": "binary", "target": "y", "metric": "roc_auc"},
                "data": {"source": "a.csv", "label": "z > 1", "split": {"by": "random"}},
                "features": {"numeric": ["y"]},
                "models": {"candidates": [{"name": "a", "type": "lightgbm"}]},
            }
        )


def test_line_of_falls_back_to_enclosing_field() -> None:
    design = load_design(EXAMPLE)
    numeric = design.line_of("features.numeric")
    assert numeric is not None and design.line_of("features.numeric[99]") == numeric
    assert design.line_of("nonexistent.path") is None


@pytest.mark.parametrize("text", ["1x", "d", "", "1.5d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_yaml_anchors_and_merge_keys_load_and_name_lines(tmp_path: Path) -> None:
    # `<<: *defaults` is how users share settings between candidates; a merged key has no line of
    # its own in the file, so an error in it points at the merge's mapping instead of crashing.
    text = EXAMPLE.read_text()
    head, sep, tail = text.partition("  candidates:\n")
    assert sep, "the example lists candidates"
    shared = "x-defaults: &lgbm\n  type: lightgbm\n  params: {n_estimators: 20}\n"
    merged = "    - name: merged_lgbm\n      <<: *lgbm\n"
    path = _write(tmp_path, shared + head + sep + merged + tail)
    with pytest.raises(DesignError) as info:  # x-defaults is not a design key
        load_design(path)
    assert info.value.field == "x-defaults" and info.value.line == 1
    path = _write(
        tmp_path, head + sep + merged.replace("<<: *lgbm", "<<: {type: lightgbm, params: {bad: 1}}") + tail
    )
    design = load_design(path)
    merged_spec = next(c for c in design.models.candidates if c.name == "merged_lgbm")
    assert merged_spec.type == "lightgbm" and merged_spec.params == {"bad": 1}
    path = _write(
        tmp_path, head + sep + merged.replace("<<: *lgbm", "<<: {type: lightgbm, imbalance: sideways}") + tail
    )
    with pytest.raises(DesignError) as info:
        load_design(path)
    assert info.value.field == "models.candidates[0].imbalance"
    assert info.value.line == _line(path, "- name: merged_lgbm")
