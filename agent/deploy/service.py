"""Run the agent on a host: a systemd unit where systemd runs, else a supervised process."""

from __future__ import annotations

import shlex
from typing import Protocol

from agent.deploy.layout import InstallLayout
from agent.deploy.ssh import RemoteHost
from runwatch.shipped import shipped_file

UNIT_NAME = "runwatch-agent.service"
UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
SYSTEMD_STATE_DIR = "/var/lib/runwatch-agent"  # the unit's StateDirectory


class AgentService(Protocol):
    kind: str

    def state_dir(self) -> str | None:
        """Where the agent must keep its state under this manager (None: the install root's)."""

    def prepare(self, remote: RemoteHost) -> bool:
        """Put in place what the manager needs (a unit file); return whether anything changed."""

    def pid(self, remote: RemoteHost) -> int | None:
        """The PID of the running agent (or its supervisor), None when it is not running."""

    def start(self, remote: RemoteHost) -> None: ...

    def stop(self, remote: RemoteHost) -> None: ...

    def remove(self, remote: RemoteHost) -> None:
        """Take away what `prepare` put in place."""


class _ServiceBase:
    """What both managers start from: the install layout the agent runs from."""

    def __init__(self, layout: InstallLayout) -> None:
        self.layout = layout


class ProcessService(_ServiceBase):
    """`runwatch supervise` with a pid file under the install root, for hosts without systemd."""

    kind = "process"

    def state_dir(self) -> str | None:
        return None

    def prepare(self, remote: RemoteHost) -> bool:
        return False

    def pid(self, remote: RemoteHost) -> int | None:
        pid_file = shlex.quote(self.layout.pid_file)
        # Alive, and a supervisor of this pid file: a stale file's PID may belong to anyone.
        out = remote.run(
            f'pid=$(cat {pid_file} 2>/dev/null) && [ -n "$pid" ] && '
            f"tr '\\0' '\\n' < /proc/$pid/cmdline 2>/dev/null | grep -qxF {pid_file} && "
            "echo $pid; true",
            what="look for the running agent",
        ).stdout.strip()
        return int(out) if out.isdigit() else None

    def start(self, remote: RemoteHost) -> None:
        layout = self.layout
        argv = [
            layout.runwatch,
            "supervise",
            "--pid-file",
            layout.pid_file,
            "--log-file",
            layout.log_file,
            "--",
            layout.runwatch,
            "agent",
            "--config",
            layout.config,
        ]
        remote.run(shlex.join(argv), what="start the agent", timeout=60)

    def stop(self, remote: RemoteHost) -> None:
        pid = self.pid(remote)
        if pid is None:
            return
        # The supervisor passes SIGTERM on and waits for the agent (which spools a final
        # report); after 15 s the whole process group goes.
        remote.run(
            f"kill -TERM {pid}; i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 150 ]; "
            f"do sleep 0.1; i=$((i+1)); done; "
            f"if kill -0 {pid} 2>/dev/null; then kill -KILL -{pid}; fi; "
            f"rm -f {shlex.quote(self.layout.pid_file)}",
            what="stop the agent",
            timeout=60,
        )

    def remove(self, remote: RemoteHost) -> None:
        return None


class SystemdService(_ServiceBase):
    """The shipped runwatch-agent.service, pointed at the install root."""

    kind = "systemd"

    def state_dir(self) -> str | None:
        return SYSTEMD_STATE_DIR

    def unit_text(self) -> str:
        text = shipped_file("systemd/runwatch-agent.service").read_text(encoding="utf-8")
        return text.replace("/opt/runwatch/bin/runwatch", self.layout.runwatch).replace(
            "/etc/runwatch/agent.yaml", self.layout.config
        )

    def prepare(self, remote: RemoteHost) -> bool:
        current = remote.run(f"cat {UNIT_PATH} 2>/dev/null; true", what="read the unit").stdout
        # The unit runs the agent as `runwatch`, which must be able to read its token.
        remote.run(
            "id runwatch >/dev/null 2>&1 || useradd --system --home-dir "
            f"{SYSTEMD_STATE_DIR} --shell /usr/sbin/nologin runwatch; "
            f"chown runwatch {shlex.quote(self.layout.token)}; "
            f"chgrp runwatch {shlex.quote(self.layout.root)}/etc "
            f"{shlex.quote(self.layout.config)}; "
            f"chmod 0750 {shlex.quote(self.layout.root)}/etc; "
            f"chmod 0640 {shlex.quote(self.layout.config)}; "
            f"chmod 0711 {shlex.quote(self.layout.root)}",
            what="let the runwatch user read its config and token",
        )
        wanted = self.unit_text()
        if current == wanted:
            return False
        remote.upload(wanted.encode(), UNIT_PATH, mode=0o644)
        remote.run(
            f"systemctl daemon-reload && systemctl enable {UNIT_NAME}",
            what="install the systemd unit",
        )
        return True

    def pid(self, remote: RemoteHost) -> int | None:
        out = remote.run(
            f"systemctl show -p MainPID --value {UNIT_NAME} 2>/dev/null; true",
            what="ask systemd for the agent",
        ).stdout.strip()
        return int(out) if out.isdigit() and int(out) > 0 else None

    def start(self, remote: RemoteHost) -> None:
        remote.run(f"systemctl restart {UNIT_NAME}", what="start the agent (systemd)")

    def stop(self, remote: RemoteHost) -> None:
        remote.run(f"systemctl stop {UNIT_NAME}; true", what="stop the agent (systemd)")

    def remove(self, remote: RemoteHost) -> None:
        remote.run(
            f"systemctl disable --now {UNIT_NAME} 2>/dev/null; rm -f {UNIT_PATH}; "
            "systemctl daemon-reload",
            what="remove the systemd unit",
        )


def service_for(kind: str, layout: InstallLayout) -> AgentService:
    """The manager for `kind` ("systemd" or "process")."""
    return SystemdService(layout) if kind == "systemd" else ProcessService(layout)
