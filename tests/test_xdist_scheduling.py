"""Under xdist a test file runs whole in one worker, and the files that use a real help desk
(Redmine, Request Tracker) share one: two workers never provision the same system database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.xdist import HELPDESKS, scope_of

# Spelt in two parts, so that this file does not count as one that uses a help desk.
REDMINE, RT = "redmine" + "_server", "rt" + "_server"


def test_help_desk_files_share_one_unit_and_other_files_stay_whole(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_redmine.py").write_text(f"def test_a({REDMINE}): ...\n")
    (tests / "test_calls.py").write_text(f"{RT} = helpdesk_rt.{RT}\n")
    (tests / "test_api.py").write_text("def test_b(clock): ...\n")
    assert scope_of("tests/test_redmine.py::test_a", tmp_path) == HELPDESKS
    assert scope_of("tests/test_calls.py::test_c[rt]", tmp_path) == HELPDESKS
    assert scope_of("tests/test_api.py::test_b[sqlite]", tmp_path) == "tests/test_api.py"
    assert scope_of("tests/test_api.py::TestX::test_y", tmp_path) == "tests/test_api.py"


def test_the_suites_help_desk_files_are_the_ones_that_start_them(
    pytestconfig: pytest.Config,
) -> None:
    root = pytestconfig.rootpath
    grouped = {
        p.name
        for p in (root / "tests").glob("test_*.py")
        if scope_of(f"tests/{p.name}::t", root) == HELPDESKS
    }
    assert grouped == {
        "test_helpdesk_calls.py",
        "test_sink_redmine.py",
        "test_sink_rt.py",
        "test_sink_selfcheck.py",
        "test_ticket_texts.py",
    }
