"""The secret scan can fail: an inner pytest session whose tests leak a token or a test secret
in any way the scan covers ends failed, naming each leak; a session that only prints a token
(as `runwatch token add` does) passes."""

from __future__ import annotations

import pytest

LEAKS = """
import logging
import sys

from collector.auth import add_token

log = logging.getLogger("runwatch.inner")


def token(tmp_path):
    return add_token(tmp_path / "agents.tokens", "web01")


def test_warning(tmp_path):
    log.warning("report from %s", token(tmp_path))


def test_debug_line(tmp_path):
    log.debug("token is %s", token(tmp_path))


def test_without_prefix(tmp_path):
    log.info("key %s", token(tmp_path)[4:])


def test_stderr(tmp_path):
    print(token(tmp_path), file=sys.stderr)


def test_log_file(tmp_path):
    (tmp_path / "agent.log").write_text("sent with " + token(tmp_path))


def test_known_secret():
    log.warning("password correct-horse-battery")
"""

CLEAN = """
import logging

from collector.auth import add_token


def test_printed_once(tmp_path):
    print(add_token(tmp_path / "agents.tokens", "web01"))
    logging.getLogger("runwatch.inner").warning("token for web01 created")
"""


# A worker whose scan result never reaches the controller (as if the plugin did not run there).
SILENT_WORKER = """

@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_sessionfinish(session):
    yield
    getattr(session.config, "workeroutput", {}).pop("runwatch_secretscan", None)
"""


def run_inner(
    pytester: pytest.Pytester,
    source: str,
    *args: str,
    conftest: str = "",
    exit_code: pytest.ExitCode | None = None,
) -> pytest.RunResult:
    """Run `source` as a test file in an inner session; check its exit code, if given."""
    pytester.makeconftest('import pytest\n\npytest_plugins = ["tests.secretscan"]\n' + conftest)
    pytester.makepyfile(test_inner=source)
    with pytest.MonkeyPatch.context() as env:
        # Loading every installed plugin costs seconds in each process (xdist starts three).
        env.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
    if exit_code is not None:
        assert result.ret == exit_code
    return result


# Each worker scans what its tests logged; the controller gathers the finds and fails the run.
XDIST = pytest.param(("-p", "xdist.plugin", "-n", "2", "--dist", "load"), id="xdist, 2 workers")


@pytest.mark.parametrize("args", [pytest.param((), id="one process"), XDIST])
def test_secret_scan_fails_a_session_that_leaks(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    result = run_inner(pytester, LEAKS, *args, exit_code=pytest.ExitCode.TESTS_FAILED)
    report = result.stdout.str().split("secret scan: FAILED")[-1]
    for test in (
        "test_warning",
        "test_debug_line",
        "test_without_prefix",
        "test_stderr",
        "test_known_secret",
    ):
        assert f"test_inner.py::{test}" in report, test
    assert "agent.log" in report
    assert "rwt_" not in report, "the report names where, not the secret"


@pytest.mark.parametrize("args", [pytest.param((), id="one process"), XDIST])
def test_secret_scan_passes_a_session_that_only_prints_a_token(
    pytester: pytest.Pytester, args: tuple[str, ...]
) -> None:
    result = run_inner(pytester, CLEAN, *args, exit_code=pytest.ExitCode.OK)
    result.stdout.fnmatch_lines(["*secret scan: no token*"])


def test_secret_scan_fails_a_run_when_a_worker_sends_no_scan(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, CLEAN, *XDIST.values[0], conftest=SILENT_WORKER)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = result.stdout.str().split("secret scan: FAILED")[-1]
    assert "worker gw0 sent no scan" in report
    assert "worker gw1 sent no scan" in report
