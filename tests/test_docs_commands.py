"""Every `mubundle` command shown in the README and docs/ is one the CLI accepts.

A renamed or removed flag otherwise leaves the user docs telling people to type a command that
fails. Commands are taken from fenced code blocks (continuation lines joined); a synopsis
(`[--seed S]`, `A|B`) has each of its flags checked against the subcommand; a command that
elides options with `...` ("otherwise as above") has each flag it names checked; every other
command is parsed whole, values included.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from mubundle.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```")
SHELL_END = {"|", "||", "&&", ";", "&", "2>&1"}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class DocCommand:
    page: str
    line: int
    text: str  # from "mubundle" on, one line, shell substitutions replaced

    def __str__(self) -> str:
        return f"{self.page}:{self.line}"


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


SUBCOMMANDS = _subcommands()
START = re.compile(r"(?:^(?:\w+=\S*\s+)*|[;&|(]\s*|\bnohup\s+|\s-m\s+)(mubundle(?:\.cli)?\s+(?:%s)(?:\s.*)?)$"
                   % "|".join(re.escape(name) for name in sorted(SUBCOMMANDS, key=len, reverse=True)))


def _without_substitutions(text: str) -> str:
    """``$(...)`` (nested too) replaced by one placeholder word, so its pipes end nothing."""
    out, depth = [], 0
    i = 0
    while i < len(text):
        if text.startswith("$(", i):
            if depth == 0:
                out.append("SUBSTITUTED")
            depth += 1
            i += 2
            continue
        if depth and text[i] == "(":
            depth += 1
        elif depth and text[i] == ")":
            depth -= 1
        elif depth == 0:
            out.append(text[i])
        i += 1
    return "".join(out)


def doc_commands() -> list[DocCommand]:
    """The `mubundle SUBCOMMAND ...` lines of the fenced code blocks of the README and docs/."""
    found = []
    for page in PAGES:
        in_block, pending, first = False, "", 0
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if FENCE.match(line):
                in_block, pending = not in_block, ""
                continue
            if not in_block:
                continue
            if not pending:
                first = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            text, pending = (pending + line).strip(), ""
            text = text[2:] if text.startswith("$ ") else text
            match = START.search(_without_substitutions(text))
            if match:
                found.append(DocCommand(page.relative_to(ROOT).as_posix(), first, match.group(1)))
    return found


COMMANDS = doc_commands()


def _words(command: DocCommand) -> list[str]:
    words = []
    for word in shlex.split(command.text, comments=True):
        if word in SHELL_END or word.startswith((">", "2>")):
            break
        words.append(word)
    return words


def _is_synopsis(command: DocCommand) -> bool:
    return "[--" in command.text or re.search(r"\w\|\w", command.text.split("#")[0]) is not None


def test_the_docs_show_commands_of_every_kind():
    """The extraction finds the commands (a broken pattern would make the other tests vacuous)."""
    shown = {_words(c)[1] for c in COMMANDS}
    assert len(COMMANDS) > 50
    assert {"simulate", "train", "generate", "evaluate", "convert", "calibrate", "refit-multiplicity"} <= shown


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_each_documented_command_uses_flags_its_subcommand_has(command):
    words = _words(command)
    options = SUBCOMMANDS[words[1]]._option_string_actions
    unknown = sorted({flag for flag in FLAG.findall(" ".join(words[2:])) if flag not in options})
    assert not unknown, f"{command}: `mubundle {words[1]}` has no {', '.join(unknown)}: {command.text}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if not _is_synopsis(c) and " ..." not in c.text],
                         ids=str)
def test_each_complete_documented_command_parses(command):
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(_words(command)[1:])
    except SystemExit as done:
        assert not done.code, f"{command}: {stderr.getvalue().strip()}: {command.text}"


def test_a_renamed_flag_would_be_caught():
    """The check is not vacuous: a flag the subcommand lacks is found in a synthetic command."""
    fake = DocCommand("fake.md", 1, "mubundle generate --flux H3a --events 10 --no-such-flag 3 --out x")
    with pytest.raises(AssertionError, match="--no-such-flag"):
        test_each_documented_command_uses_flags_its_subcommand_has(fake)
    with pytest.raises(AssertionError, match="unrecognized"):
        test_each_complete_documented_command_parses(fake)
