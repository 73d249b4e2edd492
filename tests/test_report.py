"""The report (docs/REPORT.md and its Russian twin) stays true to the code.

- Every code block introduced by `<!-- quote: path -->` still appears in that file: its lines
  contiguous and in order (at the file's indentation or dedented as a whole), a `...` line
  standing for lines left out.
- Every `make X` shown is a target of the Makefile, every option of a `python -m broker` or
  `python -m client` command line is one its command line parser defines, and every verb in
  the sequence diagram is a protocol verb.
- Every PNG referenced exists; both languages quote the same blocks and show the same images.
"""

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from messages.commands import CLIENT_COMMANDS
from messages.events import BROKER_EVENTS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REPORTS = (DOCS / "REPORT.md", DOCS / "REPORT.ru.md")

_QUOTE = re.compile(r"^<!-- quote: (?P<path>\S+) -->\n```python\n(?P<body>.*?)^```", re.M | re.S)
_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```", re.M | re.S)
_INLINE_CODE = re.compile(r"`([^`]+)`")
_MAKE = re.compile(r"(?<![\w-])make\s+(?P<target>[A-Za-z][\w-]*)")
_IMAGE = re.compile(r"!\[[^\]]*\]\((?P<path>[^)\s]+\.png)\)")
_MAKE_TARGET = re.compile(r"^(?P<names>[A-Za-z][\w-]*(?:\s+[A-Za-z][\w-]*)*)\s*:(?!=)", re.M)
_OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*)")


@dataclass(frozen=True)
class Quote:
    report: str
    path: str
    body: str

    def __str__(self) -> str:
        first = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return f"{self.report}: {self.path}: {first[:60]}"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def quotes(report: Path) -> list[Quote]:
    """Every (path, code block) the report quotes."""
    return [
        Quote(report.name, m.group("path"), m.group("body")) for m in _QUOTE.finditer(_read(report))
    ]


def code_text(markdown: str) -> list[str]:
    """Everything the report shows as code: fenced blocks and inline code spans."""
    fenced = [m.group("body") for m in _FENCE.finditer(markdown)]
    outside = _FENCE.sub("", markdown)
    # An inline span may wrap onto the next line of the paragraph; it is still one line.
    return fenced + [" ".join(span.split("\n")) for span in _INLINE_CODE.findall(outside)]


def chunks(body: str) -> list[list[str]]:
    """The block's lines (blank lines at either end dropped), split at `...` lines."""
    parts: list[list[str]] = [[]]
    for line in body.strip("\n").splitlines():
        if line.strip() == "...":
            parts.append([])
        else:
            parts[-1].append(line.rstrip())
    return [part for part in parts if any(line.strip() for line in part)]


def _matches_at(source: list[str], start: int, chunk: list[str]) -> bool:
    """Whether `chunk` (dedented) equals source[start:...] indented by one common prefix."""
    first = next(line for line in chunk if line.strip())
    offset = chunk.index(first)
    if start + offset >= len(source):
        return False
    anchor = source[start + offset]
    indent = anchor[: len(anchor) - len(anchor.lstrip())]
    if not anchor.startswith(indent + first.lstrip()) or anchor.strip() != first.strip():
        return False
    for k, line in enumerate(chunk):
        if start + k >= len(source):
            return False
        actual = source[start + k].rstrip()
        expected = (indent + line).rstrip() if line.strip() else ""
        if actual != expected:
            return False
    return True


def find_in_order(source_text: str, parts: list[list[str]]) -> str | None:
    """None if every part occurs contiguously, in order, in `source_text`; else the first
    part that does not."""
    source = [line.rstrip() for line in source_text.splitlines()]
    position = 0
    for part in parts:
        dedented = textwrap.dedent("\n".join(part)).splitlines()
        found = next(
            (i for i in range(position, len(source)) if _matches_at(source, i, dedented)), None
        )
        if found is None:
            return "\n".join(part)
        position = found + len(dedented)
    return None


def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for match in _MAKE_TARGET.finditer(_read(ROOT / "Makefile")):
        targets.update(match.group("names").split())
    return targets


ALL_QUOTES = [quote for report in REPORTS if report.exists() for quote in quotes(report)]


def test_both_reports_exist_and_quote_code() -> None:
    for report in REPORTS:
        assert report.exists(), f"{report.relative_to(ROOT)} is missing"
        assert len(quotes(report)) >= 5, f"{report.name} quotes almost no code"


@pytest.mark.parametrize("quote", ALL_QUOTES, ids=str)
def test_quoted_block_is_still_in_its_source(quote: Quote) -> None:
    source = ROOT / quote.path
    assert source.is_file(), f"{quote}: no such file"
    parts = chunks(quote.body)
    assert parts, f"{quote}: empty quote"
    missing = find_in_order(_read(source), parts)
    assert missing is None, f"{quote}: these lines are no longer in {quote.path}:\n{missing}"


def test_both_languages_quote_the_same_code_and_show_the_same_images() -> None:
    english, russian = (_read(report) for report in REPORTS)
    assert [(q.path, q.body) for q in quotes(REPORTS[0])] == [
        (q.path, q.body) for q in quotes(REPORTS[1])
    ]
    assert _IMAGE.findall(english) == _IMAGE.findall(russian)


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_every_make_target_shown_exists(report: Path) -> None:
    targets = makefile_targets()
    shown = {m.group("target") for code in code_text(_read(report)) for m in _MAKE.finditer(code)}
    assert shown, f"{report.name} shows no make command"
    assert shown <= targets, f"{report.name}: not Makefile targets: {sorted(shown - targets)}"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_every_command_line_option_shown_exists(report: Path) -> None:
    parsers = {"broker": _read(ROOT / "broker/cli.py"), "client": _read(ROOT / "client/cli.py")}
    for code in code_text(_read(report)):
        for line in code.splitlines():
            for program, parser in parsers.items():
                if f"-m {program}" not in line:
                    continue
                command = line.split(f"-m {program}", 1)[1].split("#", 1)[0].split("|", 1)[0]
                for option in _OPTION.findall(command):
                    assert f'"{option}"' in parser, f"{report.name}: {program} has no {option}"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_every_image_shown_exists(report: Path) -> None:
    images = _IMAGE.findall(_read(report))
    assert images, f"{report.name} shows no screenshot"
    for image in images:
        assert (report.parent / image).is_file(), f"{report.name}: {image} does not exist"


@pytest.mark.parametrize("report", REPORTS, ids=lambda p: p.name)
def test_sequence_diagram_uses_protocol_verbs(report: Path) -> None:
    verbs = {cls.VERB.decode() for cls in (*CLIENT_COMMANDS, *BROKER_EVENTS)}
    diagrams = [
        m.group("body")
        for m in _FENCE.finditer(_read(report))
        if m.group("lang") == "mermaid" and "sequenceDiagram" in m.group("body")
    ]
    assert diagrams, f"{report.name} has no Mermaid sequence diagram"
    for diagram in diagrams:
        for line in diagram.splitlines():
            if "->>" not in line or ":" not in line:
                continue
            label = line.split(":", 1)[1]
            shown = re.findall(r"\b[A-Z]{3,}\b", label)
            assert shown, f"{report.name}: no verb in diagram line {line.strip()!r}"
            unknown = set(shown) - verbs
            assert not unknown, f"{report.name}: not protocol verbs: {sorted(unknown)}"


def test_the_checker_itself() -> None:
    source = "class A:\n    def f(self) -> None:\n        x = 1\n        y = 2\n\n        z = 3\n"
    assert find_in_order(source, chunks("def f(self) -> None:\n    x = 1\n")) is None
    assert find_in_order(source, chunks("    x = 1\n    ...\n    z = 3\n")) is None
    assert find_in_order(source, chunks("x = 1\ny = 2\n\nz = 3")) is None
    assert find_in_order(source, chunks("z = 3\n...\nx = 1")) is not None  # order matters
    assert find_in_order(source, chunks("x = 1\nz = 3")) is not None  # contiguity matters
    assert find_in_order(source, chunks("x = 2")) is not None
    assert "broker" in makefile_targets()
