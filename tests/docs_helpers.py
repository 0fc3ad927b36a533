"""Reading the project's Markdown: the README's marked quickstart blocks, relative links and heading anchors.

Used by tests/unit/core/test_docs.py (links and anchors resolve, the README keeps its shape) and
tests/e2e/test_quickstart.py (the quickstart runs verbatim).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
QUICKSTART_MARK = "<!-- quickstart -->"  # the ```sh block right after this comment is run by the e2e test

_FENCE = re.compile(r"^```")
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def quickstart_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```sh block that follows a QUICKSTART_MARK line (blank lines and `#` comments
    dropped), in order. A mark not followed by a ```sh block is an error: the test must not run nothing."""
    lines = text.splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() != QUICKSTART_MARK:
            continue
        if i + 1 >= len(lines) or lines[i + 1].strip() != "```sh":
            raise ValueError(f"README line {i + 1}: {QUICKSTART_MARK} must be followed at once by a ```sh block")
        block = []
        for cmd in lines[i + 2 :]:
            if _FENCE.match(cmd):
                break
            if cmd.strip() and not cmd.lstrip().startswith("#"):
                block.append(cmd.strip())
        blocks.append(block)
    return blocks


def prose_lines(text: str, keep_code: bool = False) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks; inline code removed, or only its backticks (`keep_code`)."""
    out, fenced = [], False
    for n, line in enumerate(text.splitlines(), 1):
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((n, line.replace("`", "") if keep_code else _INLINE_CODE.sub("", line)))
    return out


def relative_links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link that is not a URL (`docs/x.md`, `x.md#anchor`, `#anchor`)."""
    return [
        (n, target)
        for n, line in prose_lines(text)
        for target in _LINK.findall(line)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
    ]


def anchors(text: str) -> set[str]:
    """The anchors GitHub makes of a page's headings: lower case, punctuation dropped, spaces to dashes,
    a repeated one suffixed -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(text, keep_code=True):
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out
