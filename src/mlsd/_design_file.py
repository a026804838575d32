"""Reading a design file safely: its size, its encoding and its YAML's expansion, before parsing.

A design is a few kilobytes of UTF-8 YAML. Anything else is refused with a
:class:`~mlsd.errors.DesignError` naming the file and line: a file too large, another encoding
(named: UTF-16/32 by their byte-order marks, binary by its NUL bytes, Latin-1 by the byte that is
not UTF-8), or YAML whose aliases would expand it past :data:`MAX_YAML_NODES` ("billion laughs").
:func:`mlsd.design.load_design` calls these; ``docs/hostile-inputs.md`` lists every bound.

>>> from pathlib import Path
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     f = Path(d) / "design.yaml"
...     _ = f.write_bytes("name: café".encode("latin-1"))
...     try:
...         read_design_text(f)
...     except DesignError as exc:
...         print(exc.message.split(":")[0], exc.line)
the design file is not UTF-8 1
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mlsd.errors import DesignError

__all__ = [
    "MAX_DESIGN_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "check_yaml_expansion",
    "read_design_text",
    "reader_line",
]

#: the largest design file read; a design is a few kilobytes, so more is a mistake or an attack
MAX_DESIGN_BYTES = 1_000_000
#: the most YAML nodes a design may expand to, aliases counted by the size of what they repeat
#: (a "billion laughs" file is a few hundred bytes that expand to 10^9 nodes)
MAX_YAML_NODES = 100_000
#: the most aliases (``*name``) in a design; the example uses none
MAX_YAML_ALIASES = 1_000
#: the deepest nesting of mappings and sequences; a design nests about five deep
MAX_YAML_DEPTH = 64

_BOMS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (b"\xff\xfe\x00\x00", "UTF-32-LE"),
    (b"\x00\x00\xfe\xff", "UTF-32-BE"),
    (b"\xff\xfe", "UTF-16-LE"),
    (b"\xfe\xff", "UTF-16-BE"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF8 = "UTF-8 text (with or without a byte-order mark)"
_C1_CONTROLS = re.compile(rb"[\x80-\x9f]")


def read_design_text(path: Path) -> str:
    """The file as text: size first, then the encoding (UTF-8, a UTF-8 byte-order mark dropped).

    Any other encoding is refused by name: UTF-16/32 by their byte-order marks, binary (or
    UTF-16 without a mark) by its NUL bytes, anything else by the offset and line of the first
    byte that is not UTF-8.
    """
    where = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_DESIGN_BYTES:
            raise DesignError(
                "the design file is too large",
                file=where,
                received=f"{size:,} bytes",
                expected=f"at most {MAX_DESIGN_BYTES:,} bytes",
            )
        with path.open("rb") as fh:  # read no more than the bound even if the file grows meanwhile
            data = fh.read(MAX_DESIGN_BYTES + 1)
    except OSError as exc:
        raise DesignError(
            f"cannot read the design file: {exc.strerror or exc}", file=where, expected="a readable file"
        ) from None
    if len(data) > MAX_DESIGN_BYTES:
        raise DesignError(
            "the design file is too large", file=where, expected=f"at most {MAX_DESIGN_BYTES:,} bytes"
        )
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise DesignError(
                f"the design file is {name}, not UTF-8",
                file=where,
                line=1,
                received=f"a {name} byte-order mark ({bom.hex(' ')})",
                expected=f"{_UTF8}; re-save the file as UTF-8",
            )
    data = data.removeprefix(_UTF8_BOM)
    nul = data.find(b"\x00")
    if nul >= 0:
        utf16 = _utf16_without_bom(data)
        kind = f"{utf16} text without a byte-order mark" if utf16 else "binary, not text"
        raise DesignError(
            f"the design file is {kind}",
            file=where,
            line=data.count(b"\n", 0, nul) + 1,
            received=f"a NUL byte at offset {nul}",
            expected=_UTF8,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        byte = data[exc.start : exc.start + 1]
        guess = ""
        if _C1_CONTROLS.search(data) is None:  # no C1 control bytes: the file reads as Latin-1
            guess = f"; it looks like Latin-1 (byte 0x{byte.hex()} is {byte.decode('latin-1')!r} there)"
        raise DesignError(
            f"the design file is not UTF-8: byte 0x{byte.hex()} at offset {exc.start} "
            f"(line {line}, column {column}) {exc.reason}{guess}",
            file=where,
            line=line,
            received=data[max(0, exc.start - 12) : exc.start + 12],
            expected=f"{_UTF8}; re-save the file as UTF-8",
        ) from None


def _utf16_without_bom(data: bytes) -> str | None:
    """``UTF-16-LE``/``-BE`` when the start of ``data`` decodes as mostly printable text in it."""
    head = data[:2000]
    head = head[: len(head) // 2 * 2]
    for codec in ("utf-16-le", "utf-16-be"):
        text = head.decode(codec, errors="replace")
        printable = sum(ch.isprintable() or ch in "\n\r\t" for ch in text)
        if text and printable >= 0.95 * len(text) and "\ufffd" not in text:
            return codec.upper()
    return None


def check_yaml_expansion(yaml: Any, text: str, path: Path) -> None:
    """Refuse a YAML alias bomb from its event stream, before anything is built.

    Each alias is counted as the number of nodes its anchor holds, so the running total is the
    size of the tree the file would expand to; the walk stops as soon as a bound is passed.
    """
    from ruamel.yaml.events import (
        AliasEvent,
        CollectionEndEvent,
        CollectionStartEvent,
        ScalarEvent,
    )

    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # open collections: [anchor, nodes so far]
    aliases = 0

    def refuse(message: str, event: Any, received: str, expected: str) -> DesignError:
        return DesignError(
            message, file=str(path), line=event.start_mark.line + 1, received=received, expected=expected
        )

    for event in yaml.parse(text):
        if isinstance(event, CollectionStartEvent):
            stack.append([event.anchor, 1])
            if len(stack) - 1 > MAX_YAML_DEPTH:
                raise refuse(
                    "the YAML nests too deeply",
                    event,
                    f"more than {MAX_YAML_DEPTH} levels",
                    f"at most {MAX_YAML_DEPTH} levels of nesting",
                )
        elif isinstance(event, CollectionEndEvent):
            anchor, n = stack.pop()
            if anchor is not None:
                sizes[anchor] = n
            stack[-1][1] += n
        elif isinstance(event, ScalarEvent):
            stack[-1][1] += 1
            if event.anchor is not None:
                sizes[event.anchor] = 1
        elif isinstance(event, AliasEvent):
            aliases += 1
            if any(frame[0] == event.anchor for frame in stack):
                raise refuse(
                    "a YAML alias refers to the collection that contains it (a recursive structure)",
                    event,
                    f"*{event.anchor}",
                    "an alias to a finished anchor",
                )
            if aliases > MAX_YAML_ALIASES:
                raise refuse(
                    "too many YAML aliases",
                    event,
                    f"more than {MAX_YAML_ALIASES:,} aliases",
                    f"at most {MAX_YAML_ALIASES:,}",
                )
            stack[-1][1] += sizes.get(event.anchor, 1)
            total = sum(frame[1] for frame in stack)
            if total > MAX_YAML_NODES:
                raise refuse(
                    "the YAML expands to too many nodes through aliases (an alias bomb?)",
                    event,
                    f"at least {total:,} nodes after alias *{event.anchor}",
                    f"at most {MAX_YAML_NODES:,} nodes",
                )


def reader_line(exc: Exception, text: str) -> int | None:
    """The line of a reader error, from the character position ruamel reports."""
    position = getattr(exc, "position", None)
    return text.count("\n", 0, position) + 1 if isinstance(position, int) else None
