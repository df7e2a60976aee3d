"""A short, shell-expandable description of a list of data paths.

Runs of files in one folder whose names differ only by a zero-padded number that counts up
by one (``part-00000.parquet`` ... ``part-00239.parquet``) become one bash brace expression
(``DIR/part-{00000..00239}.parquet``), so a model's ``model.json`` names its 840 training
shards in one line instead of 50 kB, and ``echo`` of the line gives the list back.
"""

from __future__ import annotations

import os
import re
from typing import Sequence

#: name = prefix + zero-padded number + suffix (the number: the last run of digits)
_NUMBERED = re.compile(r"^(.*?)(\d+)(\D*)$")


def brace_paths(paths: Sequence[str | os.PathLike]) -> str:
    """``paths`` joined by spaces, consecutive numbered files of one folder folded into
    ``prefix{first..last}suffix`` (bash brace expansion restores them, in order). Order is kept;
    paths that are not part of a run of at least three are written as they are."""
    texts = [os.fspath(p) for p in paths]
    numbered = [_NUMBERED.match(text) for text in texts]  # each name parsed once
    words: list[str] = []
    index = 0
    while index < len(texts):
        end = index + 1
        first = numbered[index]
        if first is not None and "{" not in first.group(1) + first.group(3):
            prefix, digits, suffix = first.groups()
            while end < len(texts) and _continues(numbered[end], prefix, digits, suffix, end - index):
                end += 1
        if end - index >= 3:
            words.append(f"{prefix}{{{digits}..{numbered[end - 1].group(2)}}}{suffix}")
        else:  # a run of two cannot start a longer one at its second name: write both
            words.extend(texts[index:end])
        index = end
    return " ".join(words)


def _continues(match: "re.Match[str] | None", prefix: str, digits: str, suffix: str, offset: int) -> bool:
    """Whether ``match`` is the name ``offset`` places after ``prefix + digits + suffix`` in a run:
    same prefix, suffix and number width, number larger by ``offset``."""
    return (match is not None and match.group(1) == prefix and match.group(3) == suffix
            and len(match.group(2)) == len(digits) and int(match.group(2)) == int(digits) + offset)
