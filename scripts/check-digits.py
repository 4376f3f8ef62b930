#!/usr/bin/env python3
"""Digits in the book's prose must not be typed run numbers.

Every number the book reports from a run comes from `rtlab report` (files
under book/src/generated/, included with {{#include ...}}). This check
reads the chapters (book/src/*.md, not generated/ nor subdirectories) and
fails on any digit in their prose that is not on the allow-list
(book/digits-allowed.txt: constants of specifications and of the code,
each with a reason).

Not prose, so not checked: fenced code blocks (``` or ~~~), inline code
(`...`), {{...}} directives (includes), link and image targets ((...) after
](...), <...> autolinks, [label]: target definitions), HTML comments and
the numbers of ordered-list items ("1. "). Headings are prose and are
checked.

The allow-list has one entry a line, `TEXT  # reason` (the reason is
required): TEXT is allowed wherever it stands as a whole (not inside a
longer word or number). `[chapter.md] TEXT  # reason` allows it in that
chapter only; `re:PATTERN` is a Python regular expression instead of a
literal text.

Usage:
  scripts/check-digits.py [--allow FILE] [FILE...]   default: book/src/*.md
  scripts/check-digits.py --self-test
Exit status: 0 clean, 1 digits found (each printed as file:line: word),
2 a bad allow-list.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ALLOW = ROOT / "book" / "digits-allowed.txt"

FENCE = re.compile(r"^\s*(```+|~~~+)")
DIRECTIVE = re.compile(r"\{\{.*?\}\}")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
AUTOLINK = re.compile(r"<(?:https?|mailto):[^>]*>")
LINK_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*\S.*$")
COMMENT = re.compile(r"<!--.*?-->")
WORD = re.compile(r"[^\s]*\d[^\s]*")
LIST_ITEM = re.compile(r"^(\s*)\d+[.)](\s)")
SCOPE = re.compile(r"^\[([^\]]+\.md)\]\s+(.*)$")


class Allowed:
    """An allow-list entry: a pattern, and the chapter it is limited to."""

    def __init__(self, text: str, chapter: str | None = None):
        self.chapter = chapter
        self.text = text
        body = text[3:] if text.startswith("re:") else re.escape(text)
        self.pattern = re.compile(r"(?<![0-9A-Za-z])(?:" + body + r")(?![0-9A-Za-z])")

    def applies(self, chapter: str | None) -> bool:
        return self.chapter is None or self.chapter == chapter

    def __repr__(self) -> str:
        return f"Allowed({self.text!r}, {self.chapter!r})"


def parse_allow(text: str, where: str = "allow-list") -> list[Allowed]:
    """The entries of an allow-list: `[chapter.md] TEXT  # reason`."""
    allowed = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry, sep, reason = line.partition("  #")
        entry = entry.strip()
        if not sep or not reason.strip() or not entry:
            raise ValueError(f"{where}:{n}: expected '[chapter.md] TEXT  # reason', got {raw!r}")
        chapter = None
        m = SCOPE.match(entry)
        if m:
            chapter, entry = m.group(1), m.group(2).strip()
        try:
            allowed.append(Allowed(entry, chapter))
        except re.error as e:
            raise ValueError(f"{where}:{n}: {e}") from e
    # Longest first, so that "RFC 6455 §5.2" is removed before "RFC 6455".
    return sorted(allowed, key=lambda a: len(a.text), reverse=True)


def read_allow(path: Path) -> list[Allowed]:
    return parse_allow(path.read_text(encoding="utf-8"), str(path))


def inline_code(line: str) -> str:
    """The line with every code span (`x`, ``x``) blanked."""
    out, i = [], 0
    while i < len(line):
        if line[i] == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            end = line.find("`" * run, i + run)
            if end != -1:
                out.append(" ")
                i = end + run
                continue
            out.append(line[i : i + run])
            i += run
            continue
        out.append(line[i])
        i += 1
    return "".join(out)


def prose_lines(text: str):
    """(line number, prose) for every line that is not code, with the
    parts of the line that are not prose blanked."""
    fence = None
    in_comment = False
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if m:
            fence = m.group(1)
            continue
        if in_comment:
            if "-->" not in line:
                continue
            line = line.split("-->", 1)[1]
            in_comment = False
        line = COMMENT.sub(" ", line)
        if "<!--" in line:
            line, in_comment = line.split("<!--", 1)[0], True
        if LINK_DEFINITION.match(line):
            continue
        line = LIST_ITEM.sub(r"\1 \2", line)
        line = DIRECTIVE.sub(" ", line)
        line = inline_code(line)
        line = LINK_TARGET.sub("] ", line)
        line = AUTOLINK.sub(" ", line)
        yield n, line


def strip_allowed(line: str, allowed: list[Allowed], chapter: str | None) -> str:
    """The line with every allowed text blanked where it stands alone (not
    inside a longer word or number)."""
    for a in allowed:
        if a.applies(chapter):
            line = a.pattern.sub(" ", line)
    return line


def check_text(text: str, allowed: list[Allowed], chapter: str | None = None) -> list[tuple[int, str]]:
    """Every (line, word) with a digit left once the allowed texts are out."""
    found = []
    for n, prose in prose_lines(text):
        rest = strip_allowed(prose, allowed, chapter)
        found.extend((n, w) for w in WORD.findall(rest))
    return found


def self_test() -> None:
    allowed = parse_allow(
        "\n".join(
            [
                "# a comment",
                "RFC 6455  # a specification",
                "HTTP/1.1  # a protocol version",
                r"re:§\d+(\.\d+)*  # RFC sections",
                "UTF-8  # an encoding",
                "[b.md] 42 levels  # allowed in b.md only",
            ]
        )
    )
    sample = "\n".join(
        [
            "# Chapter 1",  # 1: a heading is prose
            "RFC 6455 §5.2 over HTTP/1.1, in UTF-8.",  # 2: allowed
            "It held 16,116 connections.",  # 3: a typed run number
            "```sh",  # 4
            "rtlab bench --connections 10000",  # 5: code
            "```",  # 6
            "Run `rtlab bench --subscribers 100` and see [the run](how.md#run-2).",  # 7
            "{{#include generated/params/sizes.md}} subscribers, <https://example.com/5>",  # 8
            "[ref]: https://example.com/42",  # 9
            "HTTP/1.10 and RFC 64551 are not the allowed texts.",  # 10
            "<!-- 42 -->a comment is not prose; ``a ` 7`` neither",  # 11
            "~~~",  # 12
            "99",  # 13
            "~~~",  # 14
            "1. An ordered list's number is markup; 2 is not.",  # 15
            "Nested 42 levels deep, §10.3 and §5.5.1.",  # 16
        ]
    )
    got = check_text(sample, allowed, "a.md")
    want = [(1, "1"), (3, "16,116"), (10, "HTTP/1.10"), (10, "64551"), (15, "2"), (16, "42")]
    assert got == want, f"self-test: got {got}, want {want}"
    got = check_text(sample, allowed, "b.md")
    assert (16, "42") not in got, f"self-test: a chapter's own entry did not apply: {got}"
    for bad in ["no reason here", "TEXT  #", "re:(  # a bad pattern"]:
        try:
            parse_allow(bad)
        except ValueError:
            continue
        raise AssertionError(f"self-test: accepted a bad entry {bad!r}")
    print("check-digits self-test: ok")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--self-test"]:
        self_test()
        return 0
    allow = DEFAULT_ALLOW
    if argv[:1] == ["--allow"]:
        allow, argv = Path(argv[1]), argv[2:]
    try:
        allowed = read_allow(allow)
    except (OSError, ValueError) as e:
        print(f"check-digits: {e}", file=sys.stderr)
        return 2
    files = [Path(a) for a in argv] or sorted((ROOT / "book" / "src").glob("*.md"))
    bad = 0
    for f in files:
        for n, word in check_text(f.read_text(encoding="utf-8"), allowed, f.name):
            name = f.relative_to(ROOT) if f.is_absolute() and f.is_relative_to(ROOT) else f
            print(f"{name}:{n}: {word}")
            bad += 1
    if bad:
        sys.stdout.flush()
        print(
            f"check-digits: {bad} digit(s) in the book's prose: a number from a run comes from "
            f"book/src/generated/ (rtlab report) through {{{{#include}}}}; a constant of a "
            f"specification or of the code goes on {allow.relative_to(ROOT) if allow.is_relative_to(ROOT) else allow} with its reason",
            file=sys.stderr,
        )
        return 1
    print(f"check-digits: no typed numbers in {len(files)} chapter(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
