"""A real mail system on loopback for the notification tests: Debian's postfix receiving on
127.0.0.1 (plain SMTP, STARTTLS with SASL authentication, SMTPS) and delivering to Maildirs that
Debian's dovecot serves over IMAP. Both run from a private directory with their own configs and
ports; the system's postfix and dovecot configs are never touched."""

from __future__ import annotations

import email
import email.message
import email.policy
import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.procs import Processes
from tests.sshd import free_port

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
MASTER = "/usr/lib/postfix/sbin/master"
DOMAIN = "example.org"
PASSWORD = "imap-and-smtp-secret-42"  # every test mailbox's, and the SMTP AUTH user's


def missing() -> str | None:
    """Why the mail system cannot run here, naming the Debian package; None if it can."""
    if not os.access(POSTFIX, os.X_OK) or not os.access(MASTER, os.X_OK):
        return "needs Debian's postfix (apt-get install postfix)"
    if not os.access(DOVECOT, os.X_OK) or not os.path.exists("/usr/lib/dovecot/imap"):
        return "needs Debian's dovecot-imapd (apt-get install dovecot-imapd)"
    if not shutil.which("openssl"):
        return "needs openssl (apt-get install openssl)"
    if os.geteuid() != 0:
        return "postfix and dovecot need root to start (run as root)"
    return None


@dataclass
class MailSystem:
    """A running postfix + dovecot pair; mailboxes are `<user>@example.org`."""

    directory: Path
    smtp_port: int  # plain, and STARTTLS with AUTH
    smtps_port: int  # TLS from the first byte, with AUTH
    imap_port: int
    ca_file: Path  # the self-signed certificate postfix presents (for 127.0.0.1)
    processes: Processes
    master: subprocess.Popen[str] | None = None

    def smtp_up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.smtp_port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop_smtp(self) -> None:
        """Stop postfix (the mail server goes down; delivered mail stays)."""
        if self.master is not None:
            self.processes.stop(self.master)
            self.master = None
        # postfix's smtpd processes hold the listening socket until they notice the master
        # is gone: wait until the port refuses, so "down" means down.
        deadline = time.monotonic() + 20
        while self.smtp_up():
            if time.monotonic() > deadline:
                raise AssertionError(f"127.0.0.1:{self.smtp_port} still answers after the stop")
            time.sleep(0.1)

    def start_smtp(self) -> None:
        """Start postfix's master in the foreground (held by PID) and wait for its port."""
        log = (self.directory / "postfix.log").open("a")
        self.master = self.processes.start(
            MASTER, "-c", str(self.directory / "postfix"), "-d", stdout=log, stderr=log
        )
        _wait_port(self.smtp_port, self.directory / "postfix.log")

    def close(self) -> None:
        """Stop postfix (dovecot stops with the test's processes) and remove the directory."""
        self.stop_smtp()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log(self) -> str:
        path = self.directory / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait_port(port: int, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    shown = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}:\n{shown}")


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _postfix_config(
    directory: Path, mail: Path, *, tls: tuple[Path, Path], ports: tuple[int, int], users: list[str]
) -> Path:
    (cert, key), (smtp, smtps) = tls, ports
    config = directory / "postfix"
    config.mkdir()
    queue = directory / "queue"
    (directory / "vmailbox").write_text("".join(f"{u}@{DOMAIN} {u}/\n" for u in users))
    nobody = 65534
    (config / "main.cf").write_text(
        f"""\
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {directory / "data"}
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mail.runwatch.test
mydomain = runwatch.test
myorigin = runwatch.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
maillog_file = /dev/stdout
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = texthash:{directory / "vmailbox"}
virtual_uid_maps = static:{nobody}
virtual_gid_maps = static:{nobody}
virtual_minimum_uid = 100
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_cert_file = {cert}
smtpd_tls_key_file = {key}
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
"""
    )
    (config / "master.cf").write_text(
        f"""\
127.0.0.1:{smtp} inet n - n - - smtpd
127.0.0.1:{smtps} inet n - n - - smtpd
  -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""
    )
    return config


def _dovecot_config(directory: Path, mail: Path, imap: int, users: list[str]) -> Path:
    run = directory / "dovecot-run"
    run.mkdir()
    (directory / "dovecot-state").mkdir()
    (directory / "users").write_text(
        "".join(f"{u}:{{PLAIN}}{PASSWORD}:65534:65534::{mail / u}::\n" for u in users)
    )
    config = directory / "dovecot.conf"
    config.write_text(
        f"""\
base_dir = {run}
state_dir = {directory / "dovecot-state"}
log_path = {directory / "dovecot.log"}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/
first_valid_uid = 100
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {directory / "users"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {directory / "users"}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  unix_listener {directory / "queue" / "private" / "auth"} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""
    )
    return config


def start_mail_system(processes: Processes, users: list[str]) -> MailSystem:
    """Start postfix and dovecot in a fresh private directory (short: unix socket paths)."""
    directory = Path(tempfile.mkdtemp(prefix="rwmail-"))
    directory.chmod(0o755)
    mail = directory / "mail"
    mail.mkdir()
    os.chown(mail, 65534, 65534)
    cert, key = _certificate(directory)
    smtp, smtps, imap = free_port("127.0.0.1"), free_port("127.0.0.1"), free_port("127.0.0.1")
    postfix = _postfix_config(directory, mail, tls=(cert, key), ports=(smtp, smtps), users=users)
    (directory / "data").mkdir()
    (directory / "queue").mkdir()
    subprocess.run(
        [POSTFIX, "-c", str(postfix), "set-permissions"], check=True, capture_output=True
    )
    subprocess.run([POSTFIX, "-c", str(postfix), "check"], check=True, capture_output=True)
    dovecot = _dovecot_config(directory, mail, imap, users)
    log = (directory / "dovecot.out").open("w")
    processes.start(DOVECOT, "-F", "-c", str(dovecot), stdout=log, stderr=log)
    _wait_port(imap, directory / "dovecot.log")
    system = MailSystem(directory, smtp, smtps, imap, cert, processes)
    system.start_smtp()
    return system


class Mailbox:
    """One IMAP mailbox, read as a person's mail client reads it."""

    def __init__(self, system: MailSystem, user: str) -> None:
        self._imap = imaplib.IMAP4("127.0.0.1", system.imap_port)
        self._imap.login(user, PASSWORD)

    def close(self) -> None:
        self._imap.logout()

    def messages(self) -> list[email.message.EmailMessage]:
        """Every mail in the inbox, in arrival order."""
        self._imap.select("INBOX")
        _, data = self._imap.uid("SEARCH", None, "ALL")
        found = []
        for uid in data[0].split():
            _, parts = self._imap.uid("FETCH", uid, "(RFC822)")
            raw = parts[0][1]
            found.append(email.message_from_bytes(raw, policy=email.policy.default))
        return found  # type: ignore[return-value]

    def threads(self) -> list[list[int]]:
        """The server's threads (IMAP THREAD=REFERENCES) as lists of message numbers."""
        self._imap.select("INBOX")
        _, data = self._imap.thread("REFERENCES", "UTF-8", "ALL")
        text = (data[0] or b"").decode()
        threads, depth, current = [], 0, []
        for token in text.replace("(", " ( ").replace(")", " ) ").split():
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if depth == 0:
                    threads.append(current)
                    current = []
            else:
                current.append(int(token))
        return threads

    def wait_for(self, count: int, timeout: float = 20) -> list[email.message.EmailMessage]:
        """The inbox once it holds at least `count` mails (postfix delivers in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def clear(self) -> None:
        _, data = self._imap.select("INBOX")
        if int(data[0] or 0) == 0:
            return
        self._imap.store("1:*", "+FLAGS", "\\Deleted")
        self._imap.expunge()
