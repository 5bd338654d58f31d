"""A real Redmine for sink tests: started on a free loopback port, provisioned, stopped by PID.

Install it with `tests/services/redmine.sh`. Other test modules get the server with

    from tests.helpdesks import redmine_server  # a session-scoped fixture

and then take `redmine_server` as an argument. It is one server per test session; tests share its
database, so each test uses its own fingerprints instead of wiping it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REDMINE_DIR = Path("/usr/share/redmine")
START_TIMEOUT_SECONDS = 60.0

# Run as www-data with the environment Debian's packaging expects; `setpriv` execs, so the
# PID we get is the server's own.
_AS_WWW_DATA = (
    "setpriv",
    "--reuid=www-data",
    "--regid=www-data",
    "--init-groups",
    "env",
    "HOME=/var/lib/redmine",
    "RAILS_ENV=production",
)

# Idempotent: safe against a database an earlier session already provisioned.
_PROVISION_RB = r"""
require 'json'
Setting.rest_api_enabled = '1'
admin = User.find_by_login('admin')
admin.update_column(:must_change_passwd, false)
key = admin.api_key
trackers = Tracker.pluck(:id)
projects = {}
%w[monitoring ops].each do |ident|
  project = Project.find_by(identifier: ident) || Project.create!(
    name: ident.capitalize, identifier: ident, is_public: true,
    enabled_module_names: %w[issue_tracking], tracker_ids: trackers)
  projects[ident] = project.id
end
field = IssueCustomField.find_by(name: 'dedup_key') || IssueCustomField.create!(
  name: 'dedup_key', field_format: 'string', is_for_all: true, is_filter: true,
  tracker_ids: trackers)
user = User.find_by_login('opsuser')
unless user
  user = User.new(firstname: 'Ops', lastname: 'User', mail: 'opsuser@example.test')
  user.login = 'opsuser'
  user.password = user.password_confirmation = 'opsuser-password'
  user.status = User::STATUS_ACTIVE
  user.save!
end
# Only members with an "assignable" role can be assignees; Manager is one.
role = Role.find_by(name: 'Manager') || Role.givable.where(assignable: true).first
Project.where(id: projects.values).each do |project|
  next if Member.exists?(user_id: user.id, project_id: project.id)
  Member.create!(principal: user, project: project, role_ids: [role.id])
end
puts 'PROVISIONED ' + JSON.generate(api_key: key, projects: projects, field_id: field.id,
                                    opsuser_id: user.id, opsuser_api_key: user.api_key)
"""


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RedmineSetup:
    """What provisioning made: the admin's API key and the ids tests need."""

    api_key: str
    projects: dict[str, int]  # identifier -> id: monitoring, ops
    field_id: int  # the dedup_key issue custom field
    opsuser_id: int
    opsuser_api_key: str  # a key without admin rights, member of both projects


class RedmineServer:
    """Redmine under webrick on 127.0.0.1, as www-data, with REST on and two projects."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._setup: RedmineSetup | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def setup(self) -> RedmineSetup:
        assert self._setup is not None, "start() first"
        return self._setup

    @property
    def api_key(self) -> str:
        return self.setup.api_key

    @property
    def projects(self) -> dict[str, int]:
        return self.setup.projects

    def start(self, port: int) -> None:
        """Start the server and provision it in parallel; return once both are done."""
        self.port = port
        log = (self._log_dir / "redmine-server.log").open("wb")
        self._process = subprocess.Popen(
            [
                *_AS_WWW_DATA,
                "bundle",
                "exec",
                "rackup",
                "-s",
                "webrick",
                "-o",
                "127.0.0.1",
                "-p",
                str(port),
                "-E",
                "production",
                "config.ru",
            ],
            cwd=REDMINE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            self._setup = self._provision(deadline)
            self._wait_ready(deadline)
        except BaseException:
            self.stop()
            raise

    def _provision(self, deadline: float) -> RedmineSetup:
        script = self._log_dir / "provision.rb"
        script.write_text(_PROVISION_RB, encoding="utf-8")
        script.chmod(0o644)
        self._log_dir.chmod(0o755)  # www-data reads the script
        result = subprocess.run(
            [*_AS_WWW_DATA, "bundle", "exec", "rails", "runner", str(script)],
            cwd=REDMINE_DIR,
            capture_output=True,
            text=True,
            check=False,
            timeout=max(1.0, deadline - time.monotonic()),
        )
        for line in result.stdout.splitlines():
            if line.startswith("PROVISIONED "):
                data = json.loads(line.removeprefix("PROVISIONED "))
                return RedmineSetup(**data)
        raise AssertionError(
            f"provisioning Redmine failed (exit {result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )

    def _wait_ready(self, deadline: float) -> None:
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(
                    f"Redmine exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/issue_statuses.json", timeout=5):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise AssertionError(
            f"Redmine not ready after {START_TIMEOUT_SECONDS:g}s:\n{self.log_tail()}"
        )

    def log_tail(self, chars: int = 3000) -> str:
        path = self._log_dir / "redmine-server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        """Stop the server by its PID: TERM, then KILL after 10 s."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="session")
def redmine_server() -> Iterator[RedmineServer]:
    """One provisioned Redmine for the session; skips when Redmine is not installed."""
    if not REDMINE_DIR.is_dir():
        pytest.skip("redmine not installed (Debian package: redmine)")
    if os.geteuid() != 0:
        pytest.skip("starting Redmine as www-data needs root")
    with tempfile.TemporaryDirectory(prefix="runwatch-redmine-") as tmp:
        server = RedmineServer(Path(tmp))
        server.start(free_port())
        try:
            yield server
        finally:
            server.stop()
