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
    words: list[str] = []
    index = 0
    while index < len(texts):
        match = _NUMBERED.match(texts[index])
        end = index + 1
        if match:
            prefix, digits, suffix = match.groups()
            while end < len(texts):
                following = _NUMBERED.match(texts[end])
                if not (following and following.group(1) == prefix and following.group(3) == suffix
                        and len(following.group(2)) == len(digits)
                        and int(following.group(2)) == int(digits) + (end - index)):
                    break
                end += 1
            if end - index >= 3 and "{" not in prefix + suffix:
                last = _NUMBERED.match(texts[end - 1]).group(2)
                words.append(f"{prefix}{{{digits}..{last}}}{suffix}")
                index = end
                continue
            end = index + 1
        words.append(texts[index])
        index = end
    return " ".join(words)
