"""Supervisor: restarts a crashing child with backoff, one log per attempt, gives up after K restarts."""

from __future__ import annotations

import io
import sys

import pytest

from mubundle.train.supervisor import backoff_seconds, supervise

# exits 1 in the first attempt, 0 afterwards (the attempt number comes from the supervisor)
CRASH_ONCE = "import os, sys; print('attempt', os.environ['MUBUNDLE_ATTEMPT']); sys.exit(0 if os.environ['MUBUNDLE_ATTEMPT'] != '1' else 1)"
ALWAYS_CRASH = "import sys; print('boom'); sys.exit(1)"
USAGE_ERROR = "import sys; sys.exit(2)"


def run(tmp_path, script, max_restarts):
    return supervise([], tmp_path, max_restarts, backoff_s=0.01, backoff_max_s=0.02, echo=io.StringIO(),
                     program=[sys.executable, "-c", script])


def test_a_crashed_child_is_restarted_and_each_attempt_has_a_log(tmp_path):
    result = run(tmp_path, CRASH_ONCE, max_restarts=2)
    assert result.exit_code == 0 and result.attempts == 2
    assert [p.name for p in result.log_paths] == ["attempt-001.log", "attempt-002.log"]
    assert "attempt 1" in result.log_paths[0].read_text() and "attempt 2" in result.log_paths[1].read_text()


def test_supervisor_gives_up_after_max_restarts_with_a_clear_message(tmp_path, capsys):
    result = run(tmp_path, ALWAYS_CRASH, max_restarts=2)
    assert result.exit_code == 1 and result.attempts == 3
    assert "giving up after 3 failed attempt(s)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "attempt-001.log", "attempt-002.log", "attempt-003.log"]


def test_usage_errors_are_not_retried(tmp_path):
    result = run(tmp_path, USAGE_ERROR, max_restarts=3)
    assert result.exit_code == 2 and result.attempts == 1


def test_a_second_supervisor_continues_the_attempt_numbering(tmp_path):
    run(tmp_path, CRASH_ONCE, max_restarts=1)
    result = run(tmp_path, "import sys; sys.exit(0)", max_restarts=1)
    assert [p.name for p in result.log_paths] == ["attempt-003.log"]


@pytest.mark.parametrize("failures, expected", [(1, 1.0), (2, 2.0), (3, 4.0), (10, 30.0)])
def test_backoff_is_exponential_and_capped(failures, expected):
    assert backoff_seconds(failures, 1.0, 30.0) == expected
