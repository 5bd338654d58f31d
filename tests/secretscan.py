"""A pytest plugin: the whole suite's logs must hold no token or other secret.

It remembers every token the tests create (collector.auth.add_token) and a few fixed test
secrets, and matches anything shaped like a runwatch token (`rwt_` and 43 characters). At the
end of the session it scans what the code logged (every log record, at any logger), what the
tests left in captured stderr and log sections, and the `*.log` files under the session's
temporary directories. A find fails the run and says where, without printing the secret.

Standard output is not scanned: `runwatch token add` prints a new token there, once, by design.

Under pytest-xdist each worker scans what its own tests did and sends its finds and counts to the
controller with the worker's output at its session end; the controller adds them to its own scan,
fails the run on any find, and also when a worker sent no scan at all (its tests went unscanned).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Shaped like a token from collector.auth.add_token: the prefix and 32 random bytes, base64url.
TOKEN_SHAPE = re.compile(r"rwt_[A-Za-z0-9_-]{43}")
# Secrets the tests use in fixtures and services.
KNOWN_SECRETS = {
    "correct-horse-battery",
    "opsuser-password",
    # the help desk fakes' credentials (tests/fakes)
    "jira-secret-0451",
    "snow-secret-8812",
    "zammad-secret-77aa",
}

_remembered: set[str] = set()

# Where a worker puts its scan in the output xdist sends to the controller.
WORKER_OUTPUT_KEY = "runwatch_secretscan"


def remember(secret: str) -> None:
    """Add a secret a test made (an API key from a help desk it started) to the scan."""
    if len(secret) >= 8:
        _remembered.add(secret)
    if secret.startswith("rwt_"):
        _remembered.add(secret[4:])  # the random part alone is the secret too


def _fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:12]


class _ScanningHandler(logging.Handler):
    """Scan the text of every log record as it is made, noting the test that was running."""

    def __init__(self, leaks: Callable[[str], list[str]]) -> None:
        super().__init__(level=logging.DEBUG)
        self._leaks = leaks
        self.records = 0
        self.finds: list[str] = []
        self.current = "(outside tests)"

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # a bad format string is not this plugin's business
            text = f"{record.msg!r} {record.args!r}"
        if record.exc_info and record.exc_info[1] is not None:
            text += f" {record.exc_info[1]!r}"
        self.finds += [
            f"{what} in a log record ({record.name}) of {self.current}"
            for what in self._leaks(text)
        ]


class SecretScan:
    """Collect what the suite logs, and scan it at the end."""

    def __init__(self) -> None:
        self.handler = _ScanningHandler(self._leaks)
        self._root_level = logging.WARNING
        self.finds: list[str] = []
        self._sections: list[tuple[str, str]] = []
        self._temp_roots: list[Path] = []
        # The xdist controller runs no tests: its workers scan them and report here.
        self._controller = False
        self._workers: dict[str, dict[str, Any]] = {}

    def _secrets(self) -> set[str]:
        return KNOWN_SECRETS | _remembered

    def _leaks(self, text: str) -> list[str]:
        """What secrets `text` holds, named by fingerprint, never shown."""
        found = {
            f"a token (fingerprint {_fingerprint(m.group())})" for m in TOKEN_SHAPE.finditer(text)
        }
        found |= {f"a secret (fingerprint {_fingerprint(s)})" for s in self._secrets() if s in text}
        return sorted(found)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Every level is emitted, so a token in a debug line is found too.
        root = logging.getLogger()
        self._root_level = root.level
        root.setLevel(logging.DEBUG)
        root.addHandler(self.handler)
        self._controller = session.config.pluginmanager.has_plugin("dsession")
        import collector.auth

        original = collector.auth.add_token

        def add_token(*args: Any, **kwargs: Any) -> str:
            token = original(*args, **kwargs)
            remember(token)
            return token

        collector.auth.add_token = add_token  # type: ignore[assignment]

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self.handler.current = nodeid

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self._controller:  # a worker's report, which that worker scanned already
            return
        for name, content in report.sections:
            if "stdout" not in name:
                self._sections.append((f"{report.nodeid} ({name})", content))

    def pytest_configure(self, config: pytest.Config) -> None:
        self._config = config

    def scan(self) -> list[str]:
        finds = list(self.handler.finds)
        for where, text in self._sections:
            finds += [f"{what} in the logs of {where}" for what in self._leaks(text)]
        factory = getattr(self._config, "_tmp_path_factory", None)
        root = factory.getbasetemp() if factory is not None and factory._basetemp else None
        for path in sorted(root.rglob("*.log")) if root is not None else ():
            # Inner sessions of pytester (the scan's own test) leak on purpose.
            inner = any(p.startswith("runpytest-") for p in path.relative_to(root).parts)
            if path.is_file() and not inner:
                text = path.read_text(encoding="utf-8", errors="replace")
                finds += [f"{what} in {path}" for what in self._leaks(text)]
        return finds

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Take a finished xdist worker's scan; a worker that sent none is a find."""
        name = node.gateway.id
        scan = getattr(node, "workeroutput", {}).get(WORKER_OUTPUT_KEY)
        if scan is None:
            why = f"it went down: {error}" if error else "its tests went unscanned"
            scan = {
                "finds": [f"worker {name} sent no scan result ({why})"],
                "records": 0,
                "sections": 0,
            }
        self._workers[name] = scan

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        logging.getLogger().removeHandler(self.handler)
        logging.getLogger().setLevel(self._root_level)
        self.finds = self.scan()
        for scan in self._workers.values():
            self.finds += scan["finds"]
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:  # an xdist worker: the controller reports and fails the run
            workeroutput[WORKER_OUTPUT_KEY] = {
                "finds": self.finds,
                "records": self.handler.records,
                "sections": len(self._sections),
            }
        if self.finds:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.finds:
            terminalreporter.section("secret scan: FAILED", sep="=", red=True, bold=True)
            for line in sorted(set(self.finds))[:50]:
                terminalreporter.line(line)
        else:
            records = self.handler.records + sum(s["records"] for s in self._workers.values())
            sections = len(self._sections) + sum(s["sections"] for s in self._workers.values())
            workers = f" of {len(self._workers)} xdist workers" if self._workers else ""
            terminalreporter.write_line(
                f"secret scan: no token or known secret in {records} log records, {sections} "
                f"captured sections and the temporary *.log files{workers}"
            )


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SecretScan(), "runwatch-secretscan")
