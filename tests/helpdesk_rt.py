"""A real Request Tracker 5 for sink tests: provisioned, started on a free port, stopped by PID.

Install it with tests/services/rt.sh. Bind the session fixture in a test module with

    from tests import helpdesk_rt
    rt_server = helpdesk_rt.rt_server

(an assignment, not `from … import rt_server`, which ruff reports as F811 at every test that
takes it). One server per session; tests share its database and keep apart by fingerprints.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_LIB = "/usr/share/request-tracker5/lib"
SKIP_REASON = "request-tracker5 not installed (Debian package: request-tracker5)"
RUN_AS = "www-data"

QUEUES = ("Monitoring", "Operations")
FINGERPRINT_FIELD = "DedupKey"
OWNER = "opsuser"
# What a user needs on a queue to be a ticket's owner and work on it there.
OWNER_RIGHTS = (
    "SeeQueue",
    "ShowTicket",
    "CreateTicket",
    "OwnTicket",
    "ModifyTicket",
    "CommentOnTicket",
    "ReplyToTicket",
)

# Runs as www-data against RT's database. Idempotent: the database outlives the server, so each
# session finds what an earlier one made. Prints one JSON line with a fresh token for root.
PROVISION_PL = r"""
use strict;
use warnings;
use lib '@LIB@';
use JSON::PP;
use RT;
RT::LoadConfig();
RT::Init();

my %want = %{ decode_json(<<'END') };
@WANT@
END

sub check { my ($what, $ok, $msg) = @_; die "$what: $msg\n" unless $ok; }

my @queues;
for my $name (@{ $want{queues} }) {
    my $queue = RT::Queue->new(RT->SystemUser);
    $queue->Load($name);
    check("queue $name", $queue->Create(Name => $name)) unless $queue->id;
    push @queues, $queue;
}

my $lookup = RT::Ticket->CustomFieldLookupType;
my $cf = RT::CustomField->new(RT->SystemUser);
$cf->LoadByName(Name => $want{field}, LookupType => $lookup);
check("custom field $want{field}", $cf->Create(
    Name => $want{field}, Type => 'Freeform', MaxValues => 1, LookupType => $lookup,
)) unless $cf->id;
for my $queue (@queues) {
    check("custom field on " . $queue->Name, $cf->AddToObject($queue))
        unless $cf->IsAdded($queue->id);
}

my $user = RT::User->new(RT->SystemUser);
$user->Load($want{owner});
check("user $want{owner}", $user->Create(
    Name => $want{owner}, EmailAddress => "$want{owner}\@localhost", Privileged => 1,
)) unless $user->id;
for my $queue (@queues) {
    for my $right (@{ $want{rights} }) {
        next if $user->PrincipalObj->HasRight(Right => $right, Object => $queue);
        check("$right on " . $queue->Name,
              $user->PrincipalObj->GrantRight(Right => $right, Object => $queue));
    }
}

my $root = RT::User->new(RT->SystemUser);
$root->Load('root');
my $token = RT::AuthToken->new(RT::CurrentUser->new($root));
my ($id, $msg, $secret) = $token->Create(Owner => $root->id, Description => 'runwatch tests');
check('auth token', $id, $msg);
# A person in the help desk (tests of two-way sync): root makes a token for the owner.
my $person = RT::AuthToken->new(RT::CurrentUser->new($root));
my ($pid, $pmsg, $psecret) = $person->Create(Owner => $user->id, Description => 'runwatch tests');
check('auth token for ' . $want{owner}, $pid, $pmsg);
print "RUNWATCH " . encode_json({ token => $secret, owner_token => $psecret }) . "\n";
"""

# What a user may do, one line per right: the object's type and name, and the right.
RIGHTS_PL = r"""
my $user = RT::User->new(RT->SystemUser);
$user->Load($ARGV[0]) or die "no user $ARGV[0]\n";
my $equivalence = RT::Group->new(RT->SystemUser);
$equivalence->LoadACLEquivalenceGroup($user->PrincipalObj);
my $aces = RT::ACL->new(RT->SystemUser);
$aces->LimitToPrincipal(Type => 'Group', Id => $equivalence->PrincipalId);
while (my $ace = $aces->Next) {
    my $object = $ace->ObjectType->new(RT->SystemUser);
    $object->Load($ace->ObjectId);
    print "RUNWATCH ", join("\t", $ace->ObjectType, $object->Name, $ace->RightName), "\n";
}
"""

# Takes one right on a queue from a user.
REVOKE_PL = r"""
my ($login, $right, $name) = @ARGV;
my $user = RT::User->new(RT->SystemUser);
$user->Load($login) or die "no user $login\n";
my $queue = RT::Queue->new(RT->SystemUser);
$queue->Load($name) or die "no queue $name\n";
my ($ok, $msg) = $user->PrincipalObj->RevokeRight(Right => $right, Object => $queue);
die "$msg\n" unless $ok;
print "RUNWATCH revoked\n";
"""


def installed() -> bool:
    """Whether rt.sh has installed RT here."""
    return RT_SERVER.exists()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RTServer:
    """Request Tracker's standalone server on 127.0.0.1, run as www-data with its own HOME."""

    def __init__(self) -> None:
        self.port: int | None = None
        self._token: str | None = None
        self._owner_token: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._home: Path | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        assert self.port is not None, "RTServer.start() first"
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        """An auth token for root (RT stores only its hash; this is the only copy)."""
        assert self._token is not None, "RTServer.start() first"
        return self._token

    @property
    def owner_token(self) -> str:
        """An auth token for OWNER: a person working tickets, not runwatch."""
        assert self._owner_token is not None, "RTServer.start() first"
        return self._owner_token

    def as_www_data(self, *argv: str) -> list[str]:
        """A command line that runs `argv` as RT's user, with this server's HOME and port."""
        assert self._home is not None
        env = [f"HOME={self._home}", f"PATH={os.environ.get('PATH', '/usr/bin:/bin')}"]
        if self.port is not None:
            env.append(f"RUNWATCH_RT_PORT={self.port}")  # read by 99-local.pm from rt.sh
        # setpriv execs: the PID we get is the program's own.
        return [
            "setpriv",
            f"--reuid={RUN_AS}",
            f"--regid={RUN_AS}",
            "--init-groups",
            "env",
            "-i",
            *env,
            *argv,
        ]

    def start(self, port: int, timeout: float = 60.0) -> None:
        """Provision queues, field, user and token, start the server, and wait until it answers."""
        if os.geteuid() != 0:
            pytest.skip("starting rt-server as www-data needs root")
        self.port = port
        # Not under pytest's tmp_path: its base directory is 0700 and www-data cannot enter it.
        self._home = Path(tempfile.mkdtemp(prefix="runwatch-rt-"))
        shutil.chown(self._home, RUN_AS, RUN_AS)
        self._log = self._home / "rt-server.log"
        self._token, self._owner_token = self.provision()
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                self.as_www_data(
                    str(RT_SERVER), "--host", "127.0.0.1", "--port", str(port), "--max-workers", "2"
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._home,
            )
        self._wait_ready(timeout)

    def provision(self) -> tuple[str, str]:
        """Create what the sink tests need (idempotently); return new tokens for root and
        for OWNER."""
        want = {
            "queues": list(QUEUES),
            "field": FINGERPRINT_FIELD,
            "owner": OWNER,
            "rights": list(OWNER_RIGHTS),
        }
        script = PROVISION_PL.replace("@LIB@", RT_LIB).replace("@WANT@", json.dumps(want))
        result = subprocess.run(
            self.as_www_data("perl", "-"),
            input=script,
            text=True,
            capture_output=True,
            cwd=self._home,
            timeout=120,
            check=False,
        )
        for line in result.stdout.splitlines():
            if line.startswith("RUNWATCH "):
                made = json.loads(line.removeprefix("RUNWATCH "))
                return str(made["token"]), str(made["owner_token"])
        raise AssertionError(
            f"RT provisioning failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
        )

    def perl(self, script: str, *args: str) -> list[str]:
        """Run `script` with RT loaded, as www-data; return the lines it printed after RUNWATCH."""
        prelude = f"use strict;\nuse warnings;\nuse lib '{RT_LIB}';\nuse RT;\n"
        prelude += "RT::LoadConfig();\nRT::Init();\n"
        result = subprocess.run(
            self.as_www_data("perl", "-", *args),
            input=prelude + script,
            text=True,
            capture_output=True,
            cwd=self._home,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"perl failed:\n{result.stdout}\n{result.stderr}"
        return [
            line.removeprefix("RUNWATCH ")
            for line in result.stdout.splitlines()
            if line.startswith("RUNWATCH ")
        ]

    def rights(self, login: str) -> set[tuple[str, str, str]]:
        """The rights granted to the user itself: (object type, object name, right)."""
        lines = self.perl(RIGHTS_PL, login)
        return {(kind, name, right) for kind, name, right in (x.split("\t") for x in lines)}

    def revoke(self, login: str, right: str, queue: str) -> None:
        """Take `right` on `queue` from the user (RT reads rights afresh on every request)."""
        assert self.perl(REVOKE_PL, login, right, queue) == ["revoked"]

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(
            f"{self.url}/REST/2.0/rt", headers={"Authorization": f"token {self.token}"}
        )
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise AssertionError(
                    f"rt-server exited with {self._process.returncode}:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError(f"rt-server not ready after {timeout:g}s:\n{self.log_text()}")

    def log_text(self) -> str:
        """What the server wrote to stdout and stderr (RT logs warnings there)."""
        if self._log is None or not self._log.exists():
            return ""
        return self._log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """Stop the master by its PID (it stops its workers) and remove the HOME directory."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None


@pytest.fixture(scope="session")
def rt_server() -> Iterator[RTServer]:
    """One provisioned RT for the whole session; tests keep apart by their own fingerprints."""
    if not installed():
        pytest.skip(SKIP_REASON)
    server = RTServer()
    try:
        server.start(free_port())
        yield server
    finally:
        server.stop()
