"""Every citation of a document in the code and the docs points at something that exists.

A citation names a Markdown file by its path from the repository root, followed by section
numbers (``docs/numerics.md section 4``, ``sections 1-3``, ``sections 2 and 3``, ``section 4.1``)
or by headings in quotes (``docs/architecture.md ("GEMM array and engine")``, also
``docs/host-interface.md, section "UART link"``). The path may be the text of a Markdown link,
``[docs/numerics.md](numerics.md) section 5``. A section number ``N`` needs a heading that starts
with ``N.`` in that file; a quoted heading must be the text of a heading, with or without its
number. The numerics specification of record lives outside the repository, so a numerics
document named without the ``docs/`` in front is an error too.

Scanned: every ``.py`` file under ``hw/``, ``sim/``, ``synth/`` and ``tests/``, every ``.md``
file under ``docs/``, and ``README.md``.
"""

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: A Markdown path, optionally the text of a Markdown link whose target follows.
_PATH = r"(?<![\w./-])(?P<path>[\w./-]*\w\.md)(?![\w.])(?:\]\([^)\s]*\))?`?"
#: Space between the words of a citation, also across the lines of a ``#`` comment.
_SP = r"(?:\s*\n[ \t]*#)?\s+"
_NUM = r"\d+(?:\.\d+)*"
#: A section number with what it is about, ``1 (formats)``, in a list of them.
_NUM_NOTE = _NUM + r"(?:\s*\([^()]*\))?"
_SECTIONS = re.compile(
    _PATH + r",?" + _SP + r"(?:(?P<one>section)" + _SP + r"(?P<n1>" + _NUM + r")|(?P<many>sections)"
    + _SP + r"(?P<nums>" + _NUM_NOTE + r"(?:" + r"(?:\s*[-\u2013,]\s*|" + _SP + r"(?:and|to)" + _SP
    + r")" + _NUM_NOTE + r")*))")
_HEADINGS = re.compile(
    _PATH + r",?" + _SP + r"(?:section" + _SP + r")?"
    + r"(?P<quoted>\(\s*\"[^\"]+\"(?:\s*,\s*\"[^\"]+\")*\s*\)|\"[^\"]+\")")
_BARE_NUMERICS = re.compile(r"(?<![\w./-])(?<!\]\()numerics\.md", re.IGNORECASE)

_HEADING_LINE = re.compile(r"^#{1,6}\s+(?P<text>.*?)\s*#*\s*$")
_HEADING_NUMBER = re.compile(r"(?P<num>" + _NUM + r")\.?\s+(?P<rest>.*)")


def _words(text):
    """Text with comment continuations and runs of white space collapsed to single spaces."""
    return " ".join(re.sub(r"\n[ \t]*#", " ", text).split())


@cache
def headings(path):
    """Headings of the Markdown file ``path`` (relative to the root), outside code fences:
    ``(texts, numbers)``, where ``texts`` holds each heading with and without its number."""
    texts, numbers, fenced = set(), set(), False
    for line in (ROOT / path).read_text().splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        match = _HEADING_LINE.match(line)
        if fenced or not match:
            continue
        text = match["text"]
        texts.add(text)
        numbered = _HEADING_NUMBER.fullmatch(text)
        if numbered:
            numbers.add(numbered["num"])
            texts.add(numbered["rest"])
    return frozenset(texts), frozenset(numbers)


def _section_numbers(nums):
    """``"1-3"`` -> 1, 2, 3; ``"2 and 3"`` -> 2, 3; ``"1 (formats) and 2"`` -> 1, 2."""
    tokens = re.findall(_NUM + r"|[-\u2013]|to", re.sub(r"\([^()]*\)", "", _words(nums)))
    out, i = [], 0
    while i < len(tokens):
        first = tokens[i]
        if i + 2 < len(tokens) and tokens[i + 1] in ("-", "\u2013", "to"):
            last = tokens[i + 2]
            if first.isdigit() and last.isdigit():
                out += [str(n) for n in range(int(first), int(last) + 1)]
            else:
                out += [first, last]
            i += 3
        else:
            out.append(first)
            i += 1
    return out


def _missing_file(path):
    return not (ROOT / path).is_file()


def bad_citations(text, source="<string>"):
    """``(citations, problems)`` for ``text``: how many citations it has, and one line
    ``source:line: citation: what is wrong`` per citation that does not resolve."""
    found, problems = 0, []

    def report(match, what):
        line = text.count("\n", 0, match.start()) + 1
        problems.append(f"{source}:{line}: {_words(match.group(0))}: {what}")

    for match in _SECTIONS.finditer(text):
        found += 1
        path = match["path"]
        if _missing_file(path):
            report(match, f"{path} is not a file of the repository")
            continue
        numbers = headings(path)[1]
        wanted = [match["n1"]] if match["one"] else _section_numbers(match["nums"])
        for n in wanted:
            if n not in numbers:
                report(match, f"{path} has no heading numbered {n}.")
    for match in _HEADINGS.finditer(text):
        found += 1
        path = match["path"]
        if _missing_file(path):
            report(match, f"{path} is not a file of the repository")
            continue
        texts = headings(path)[0]
        for quoted in re.findall(r"\"([^\"]+)\"", match["quoted"]):
            if _words(quoted) not in texts:
                report(match, f"{path} has no heading {_words(quoted)!r}")
    for match in _BARE_NUMERICS.finditer(text):
        found += 1
        report(match, "the numerics document of the repository is docs/numerics.md; the "
                      "specification it restates is not in the repository")
    return found, problems


def scanned_files():
    files = [p for d in ("hw", "sim", "synth", "tests") for p in sorted((ROOT / d).rglob("*.py"))]
    files += sorted((ROOT / "docs").rglob("*.md"))
    files.append(ROOT / "README.md")
    return files


def test_every_citation_resolves():
    total, problems = 0, []
    for path in scanned_files():
        found, bad = bad_citations(path.read_text(), str(path.relative_to(ROOT)))
        total += found
        problems += bad
    assert not problems, "citations that do not resolve:\n" + "\n".join(problems)
    assert total >= 40, f"only {total} citations found: is the scanner still matching them?"


def test_numerics_sections_are_numbered():
    """The numbers that code cites are those of the specification the document restates."""
    texts, numbers = headings("docs/numerics.md")
    assert {"1", "2", "3", "4", "5", "6"} <= numbers
    assert "4. Chunk-based dot products and GEMM" in texts


# Strings built in pieces so that the scan of this file does not see them as citations.
_MD = ".md"
_DOC = "docs/numerics" + _MD


@pytest.mark.parametrize("text,count", [
    (f"{_DOC} section 99", 1),
    (f"{_DOC} sections 4-9", 1),
    (f"{_DOC} sections 2 and 99", 1),
    (f"{_DOC} sections 3 (``fma``) and 99 (the update)", 1),
    (f"{_DOC} section 4.7", 1),
    (f"# See {_DOC}\n    # section 99.", 1),
    (f"docs/nothing{_MD} section 1", 1),
    (f"docs/nothing{_MD} (\"Formats\")", 1),
    (f"docs/architecture{_MD} (\"GEMM engine\")", 1),
    (f"docs/architecture{_MD} (\"Package layout\", \"GEMM array\")", 1),
    (f"docs/host-interface{_MD}, section \"UART\"", 1),
    (f"NUMERICS{_MD} section 4", 2),                 # a bare path: missing, and not docs/
    (f"see `NUMERICS{_MD}`", 1),
    (f"[numerics{_MD}](numerics{_MD}) section 5", 2),
])
def test_checker_catches_made_up_citations(text, count):
    _, problems = bad_citations(text)
    assert len(problems) == count, problems


@pytest.mark.parametrize("text", [
    f"{_DOC} section 4",
    f"{_DOC} sections 1-3 and 7",
    f"{_DOC} sections 1 (formats) and 2 (rounding modes)",
    f"# the final add of {_DOC}\n    # section 4: total",
    f"[{_DOC}](numerics{_MD}) section 5",
    f"{_DOC} (\"Formats\")",
    f"{_DOC} (\"4. Chunk-based dot products and GEMM\")",
    f"docs/architecture{_MD} (\"GEMM array and\n    engine\", \"Dataflow controller\")",
    f"docs/host-interface{_MD}, section \"UART link\"",
])
def test_checker_accepts_good_citations(text):
    found, problems = bad_citations(text)
    assert found >= 1 and not problems, problems
