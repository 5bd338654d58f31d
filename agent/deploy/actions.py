"""One host's install, upgrade, rollback, status or remove: each step undone if a later one fails.

Every action first reads the host's state in one round trip (the probe), then changes only what
differs from what is wanted, so a second run of the same install changes nothing and says so.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.deploy.agentconfig import AgentConfigRenderer
from agent.deploy.bundle import Bundle
from agent.deploy.enrolment import CollectorClient, token_fingerprint
from agent.deploy.errors import DeployError, Interrupted
from agent.deploy.inventory import DeployTarget
from agent.deploy.layout import InstallLayout, release_version
from agent.deploy.service import AgentService, service_for
from agent.deploy.ssh import RemoteHost
from agent.deploy.stop import StopRequest
from runwatch import units

log = logging.getLogger(__name__)

Action = Literal["install", "upgrade", "rollback", "status", "remove"]
ACTIONS: tuple[Action, ...] = ("install", "upgrade", "rollback", "status", "remove")
Outcome = Literal["changed", "unchanged", "ok", "failed", "interrupted"]

MIN_PYTHON = (3, 11)
_REPORT_POLL_SECONDS = 0.5

# Run by the host's Python: everything deploy needs to know about the host, in one round trip.
PROBE = r"""
import json, os, platform, sys
root = sys.argv[1]
def read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return None
def link(path):
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None
releases = root + "/releases"
done = [n for n in (os.listdir(releases) if os.path.isdir(releases) else [])
        if os.path.exists(os.path.join(releases, n, ".deployed"))]
print(json.dumps({
    "python": list(sys.version_info[:3]), "machine": platform.machine(),
    "systemd": os.path.isdir("/run/systemd/system"), "root_exists": os.path.isdir(root),
    "manifest": read(root + "/deploy.json"), "config": read(root + "/etc/agent.yaml"),
    "token": read(root + "/etc/agent.token"), "current": link(root + "/current"),
    "previous": link(root + "/previous"), "releases": sorted(done)}))
"""


@dataclass(frozen=True)
class HostState:
    """What the probe found on the host."""

    python: tuple[int, int, int]
    machine: str
    systemd: bool
    root_exists: bool
    manifest: dict[str, Any] | None
    config: str | None
    token: str | None
    current: str | None  # the bundle id `current` points at
    previous: str | None
    releases: list[str]

    @property
    def python_text(self) -> str:
        return ".".join(map(str, self.python))


@dataclass
class HostResult:
    """One row of the final table (and of `--json`)."""

    host: str
    action: str
    result: Outcome
    duration_seconds: float
    error: str | None = None
    changes: list[str] = field(default_factory=list)
    detail: str = ""
    version: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "action": self.action,
            "result": self.result,
            "duration_seconds": round(self.duration_seconds, 3),
            "error": self.error,
            "changes": self.changes,
            "detail": self.detail,
            "version": self.version,
        }


class UndoLog:
    """Steps that put the host back as it was, run newest first when a later step fails."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, step: Callable[[], object]) -> None:
        self._steps.append((what, step))

    def clear(self) -> None:
        """Forget every step: past this point there is no going back (a token was revoked)."""
        self._steps.clear()

    def __bool__(self) -> bool:
        return bool(self._steps)

    def run(self) -> list[str]:
        """Undo everything; return what could not be undone (and carry on past it)."""
        failed = []
        while self._steps:
            what, step = self._steps.pop()
            try:
                step()
            except Exception as exc:  # noqa: BLE001 -- every undo step gets its chance
                log.error("undo failed: %s: %s", what, exc)
                failed.append(f"{what}: {exc}")
        return failed


@dataclass(frozen=True)
class DeployContext:
    """What every host's work shares: how to connect, the collector, the bundle, the config."""

    connect: Callable[[DeployTarget], RemoteHost]
    collector: CollectorClient
    renderer: AgentConfigRenderer
    bundle: Bundle | None  # None for status, rollback and remove
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    stop: StopRequest = field(default_factory=StopRequest)  # set by Ctrl-C


class HostDeployer:
    """Carry out one action on one host and turn any failure into a failed HostResult."""

    def __init__(
        self,
        target: DeployTarget,
        context: DeployContext,
        progress: Callable[[str], None] = lambda _step: None,
    ) -> None:
        self.target = target
        self.context = context
        self.layout = InstallLayout(target.install_root)
        self._report_progress = progress
        self._step = "waiting"
        self._changes: list[str] = []
        self._detail = ""
        self._version: str | None = None

    def run(self, action: Action) -> HostResult:
        started = self.context.clock()
        undo = UndoLog()
        outcome: Outcome
        error = None
        try:
            self.context.stop.check("waiting")
            self._progress("connecting")
            remote = self.context.connect(self.target)
            try:
                remote.check_stop("connecting")
                outcome = getattr(self, f"_{action}")(remote, undo)
            except Exception as exc:  # noqa: BLE001 -- undone, logged if unexpected, reported
                outcome, error = self._failed(exc, action, remote, undo)
            finally:
                remote.close()
        except Interrupted:
            outcome, error = "interrupted", "interrupted before its turn; nothing was changed"
        except DeployError as exc:
            outcome, error = "failed", str(exc)
        except Exception as exc:  # one host's surprise must not stop the others
            log.exception("%s on %s failed unexpectedly", action, self.target.name)
            outcome, error = "failed", f"{type(exc).__name__}: {exc}"
        return HostResult(
            self.target.name,
            action,
            outcome,
            self.context.clock() - started,
            error,
            [] if outcome in ("failed", "interrupted") else self._changes,
            self._detail,
            self._version,
        )

    def _failed(
        self, exc: Exception, action: Action, remote: RemoteHost, undo: UndoLog
    ) -> tuple[Outcome, str]:
        """Undo what the action did; say what went wrong and what state the host is in."""
        outcome: Outcome = "failed"
        if isinstance(exc, Interrupted):
            outcome, error = "interrupted", f"interrupted while {self._step}"
        else:
            error = str(exc) or type(exc).__name__
            if not isinstance(exc, DeployError):
                log.exception("%s on %s failed unexpectedly", action, self.target.name)
                error = f"{type(exc).__name__}: {error}"
        if not undo:
            if outcome == "interrupted" and not self._changes:
                error += "; nothing was changed"
            elif outcome == "interrupted":
                error += f"; done before that: {'; '.join(self._changes)}"
            return outcome, error
        self._progress("undoing")
        with remote.uninterruptible():  # a half-undone host is worse than a late stop
            problems = undo.run()
        if problems:
            error += (
                f"; undoing failed too: {'; '.join(problems)}; `runwatch deploy status` "
                "shows what is on the host"
            )
        else:
            error += "; the host was put back as it was"
        return outcome, error

    def _progress(self, step: str) -> None:
        if step != "undoing":
            self._step = step
        self._report_progress(step)

    # -- the host's state -----------------------------------------------------------------

    def _probe(self, remote: RemoteHost) -> HostState:
        self._progress("probing")
        python = self.target.python
        result = remote.run(
            f"{shlex.quote(python)} -c {shlex.quote(PROBE)} {shlex.quote(self.layout.root)}",
            what="probe",
            check=False,
        )
        if result.exit_status == 127:
            raise DeployError(
                f"{python} not found on the host: runwatch needs Python "
                f"{'.'.join(map(str, MIN_PYTHON))} or later (set `python:` "
                "in the inventory to its path)"
            )
        if result.exit_status != 0:
            tail = " / ".join(result.stderr.strip().splitlines()[-3:])
            raise DeployError(
                f"probing the host with {python} failed (exit "
                f"{result.exit_status}): {tail or 'no output'}"
            )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        manifest = None
        if data["manifest"]:
            try:
                manifest = json.loads(data["manifest"])
            except ValueError:
                raise DeployError(
                    f"{self.layout.manifest} is not valid JSON; fix or remove it"
                ) from None
        state = HostState(
            tuple(data["python"]),
            data["machine"],
            data["systemd"],
            data["root_exists"],
            manifest,
            data["config"],
            data["token"],
            data["current"],
            data["previous"],
            data["releases"],
        )
        if state.python[:2] < MIN_PYTHON:
            raise DeployError(
                f"{python} on the host is Python {state.python_text}; runwatch "
                f"needs {'.'.join(map(str, MIN_PYTHON))} or later"
            )
        return state

    def _service(self, state: HostState) -> AgentService:
        if state.manifest is not None:
            kind = str(state.manifest.get("service", "process"))
        elif self.target.service == "auto":
            kind = "systemd" if state.systemd else "process"
        else:
            kind = self.target.service
        if kind == "systemd" and not state.systemd:
            raise DeployError(
                "the inventory asks for systemd, but systemd does not run on "
                "this host (set `service: process` or `auto`)"
            )
        return service_for(kind, self.layout)

    # -- small remote steps -----------------------------------------------------------------

    def _sh(self, remote: RemoteHost, command: str, what: str, timeout: float = 600.0) -> str:
        return remote.run(command, what=what, timeout=timeout).stdout

    def _link(self, remote: RemoteHost, name: str, bundle_id: str | None) -> None:
        """Point `current` or `previous` at a release (atomically), or remove the link."""
        path = shlex.quote(f"{self.layout.root}/{name}")
        if bundle_id is None:
            self._sh(remote, f"rm -f {path}", f"remove the {name} link")
            return
        self._sh(
            remote,
            f"ln -sfn {shlex.quote('releases/' + bundle_id)} {path}.new && mv -T {path}.new {path}",
            f"point {name} at {bundle_id}",
        )

    def _write(self, remote: RemoteHost, path: str, text: str | None, mode: int) -> None:
        if text is None:
            self._sh(remote, f"rm -f {shlex.quote(path)}", f"remove {path}")
        else:
            remote.upload(text.encode(), path, mode=mode)

    def _restart_and_confirm(self, remote: RemoteHost, service: AgentService, version: str) -> None:
        """Restart the agent and wait for the new one's first report."""
        service.stop(remote)
        # Taken once the old agent is gone, so its final report cannot pass for the new one's.
        before = self.context.collector.host_record(self.target.name)
        service.start(remote)
        self._wait_for_report(remote, service, version, before)

    def _back_as_before(
        self, remote: RemoteHost, service: AgentService, was_running: int | None
    ) -> None:
        service.stop(remote)
        if was_running is not None:
            service.start(remote)

    def _wait_for_report(
        self, remote: RemoteHost, service: AgentService, version: str, before: dict[str, Any] | None
    ) -> None:
        """Return once a report from the new agent (this version, newer than `before`) is in."""
        self._progress("waiting for its first report")
        collector = self.context.collector
        name = self.target.name
        since = before["last_report_at"] if before else None
        deadline = self.context.clock() + self.target.report_timeout
        while True:
            record = collector.host_record(name)
            if (
                record is not None
                and record["agent_version"] == version
                and (since is None or record["last_report_at"] > since)
            ):
                return
            if self.context.clock() >= deadline:
                break
            remote.pause(_REPORT_POLL_SECONDS, "waiting for its first report")
        tail = self._log_tail(remote, service)
        raise DeployError(
            f"no report from {name} (runwatch {version}) reached the collector "
            f"at {collector.url} within {self.target.report_timeout:g}s"
            + (f"; the agent's log ends: {tail}" if tail else "")
        )

    def _log_tail(self, remote: RemoteHost, service: AgentService) -> str:
        if service.kind == "systemd":
            command = "journalctl -u runwatch-agent -n 3 --no-pager -o cat 2>/dev/null; true"
        else:
            command = f"tail -n 3 {shlex.quote(self.layout.log_file)} 2>/dev/null; true"
        lines = remote.run(command, what="read the agent's log", check=False).stdout
        return " / ".join(line.strip() for line in lines.strip().splitlines())

    def _write_manifest(self, remote: RemoteHost, service: AgentService, bundle_id: str) -> None:
        manifest = {
            "written_by": "runwatch deploy",
            "host": self.target.name,
            "service": service.kind,
            "bundle": bundle_id,
            "version": release_version(bundle_id),
            "at": round(self.context.wall()),
        }
        remote.upload(
            json.dumps(manifest, indent=2).encode() + b"\n", self.layout.manifest, mode=0o644
        )

    def _check_bundle_fits(self, bundle: Bundle, state: HostState) -> None:
        host = f"{'.'.join(map(str, state.python[:2]))}"
        if host != bundle.target.python or state.machine != bundle.target.machine:
            raise DeployError(
                f"the bundle is built for {bundle.target}, but the host has "
                f"Python {state.python_text} on {state.machine}; run deploy with "
                "a Python of the host's version on the same machine type"
            )

    def _add_release(self, remote: RemoteHost, bundle: Bundle, python: str) -> None:
        """Upload the bundle and build the release's venv from it, without any index."""
        layout = self.layout
        release = layout.release(bundle.id)
        archive = f"{layout.incoming}/{bundle.id}.tar"
        self._progress("uploading the bundle")
        remote.upload(bundle.archive, archive, mode=0o600)
        unpacked = f"{layout.incoming}/{bundle.id}"
        q = shlex.quote
        self._progress("creating the venv")
        script = "\n".join(
            [
                "set -e",
                f"echo '{bundle.sha256}  '{q(archive)} | sha256sum -c --quiet -",
                f"rm -rf {q(release)} {q(unpacked)}",
                f"mkdir -p {q(unpacked)}",
                f"tar -xf {q(archive)} -C {q(unpacked)}",
                # pip comes from the bundle: the host needs neither ensurepip nor an index.
                f"{q(python)} -m venv --without-pip {q(release)}",
                f"pip_wheel=$(ls {q(unpacked)}/wheels/pip-*.whl | head -n 1)",
                f'{q(release)}/bin/python "$pip_wheel/pip" install --isolated --quiet '
                "--no-index --disable-pip-version-check --no-warn-script-location "
                f"--find-links {q(unpacked)}/wheels runwatch=={q(bundle.version)}",
                f"{q(release)}/bin/runwatch --version",
                f"touch {q(release)}/.deployed",
                f"rm -rf {q(unpacked)} {q(archive)}",
            ]
        )
        out = self._sh(remote, script, "installing the release", timeout=900)
        if bundle.version not in out:
            raise DeployError(
                f"the new release says {out.strip()!r}, not runwatch {bundle.version}"
            )

    # -- actions ----------------------------------------------------------------------------

    def _install(self, remote: RemoteHost, undo: UndoLog) -> Outcome:
        return self._converge(remote, undo, "install")

    def _upgrade(self, remote: RemoteHost, undo: UndoLog) -> Outcome:
        return self._converge(remote, undo, "upgrade")

    def _converge(self, remote: RemoteHost, undo: UndoLog, action: Action) -> Outcome:
        bundle = self.context.bundle
        assert bundle is not None
        state = self._probe(remote)
        self._check_bundle_fits(bundle, state)
        layout, target = self.layout, self.target
        if state.root_exists and state.manifest is None:
            raise DeployError(
                f"{layout.root} exists but holds no deploy.json: deploy does not "
                "install over what it did not put there"
            )
        if action == "install" and state.current not in (None, bundle.id):
            raise DeployError(
                f"another release is installed here ({state.current}; this bundle is "
                f"{bundle.id}): `runwatch deploy upgrade` replaces it and keeps it for rollback"
            )
        if action == "upgrade" and state.manifest is None:
            raise DeployError("runwatch is not installed here; use `runwatch deploy install`")
        service = self._service(state)
        config_text = self.context.renderer.render(target, service.state_dir())
        was_running = service.pid(remote)
        if not state.root_exists:
            q = shlex.quote
            # Pushed first, so it runs last: after the agent it started has been stopped.
            undo.push(
                "remove the install root",
                lambda: self._sh(remote, f"rm -rf {q(layout.root)}", "remove the root"),
            )
            self._sh(
                remote,
                f"mkdir -p -m 0700 {q(layout.root)} && mkdir -p -m 0700 "
                + " ".join(q(d) for d in layout.directories),
                "make directories",
            )
            self._changes.append(f"created {layout.root}")
        undo.push(
            "put the agent back as it was",
            lambda: self._back_as_before(remote, service, was_running),
        )
        self._put_release(remote, undo, state, bundle)
        if state.config != config_text:
            undo.push(
                "restore the agent config",
                lambda: self._write(remote, layout.config, state.config, 0o644),
            )
            self._write(remote, layout.config, config_text, 0o644)
            self._changes.append(
                "wrote the agent config" if state.config is None else "updated the agent config"
            )
        self._put_token(remote, undo, state)
        if service.prepare(remote):
            if state.manifest is None:
                undo.push("remove the systemd unit", lambda: service.remove(remote))
            self._changes.append("installed the systemd unit")
        if self._changes or was_running is None:
            self._progress("starting the agent")
            self._changes.append("restarted the agent" if was_running else "started the agent")
            self._restart_and_confirm(remote, service, bundle.version)
            self._write_manifest(remote, service, bundle.id)
        keep = {bundle.id, state.current if state.current != bundle.id else state.previous}
        stale = [r for r in state.releases if r not in keep]
        if stale:
            self._sh(
                remote,
                "rm -rf " + " ".join(shlex.quote(layout.release(r)) for r in stale),
                "remove old releases",
            )
        self._version = bundle.version
        self._detail = f"runwatch {bundle.version}, {service.kind}"
        return "changed" if self._changes else "unchanged"

    def _put_release(
        self, remote: RemoteHost, undo: UndoLog, state: HostState, bundle: Bundle
    ) -> None:
        """Make the bundle's release current; the release it replaces becomes `previous`."""
        if bundle.id not in state.releases:
            release = shlex.quote(self.layout.release(bundle.id))
            undo.push(
                f"remove release {bundle.id}",
                lambda: self._sh(remote, f"rm -rf {release}", "remove the new release"),
            )
            self._add_release(remote, bundle, self.target.python)
            self._changes.append(f"installed runwatch {bundle.version} ({bundle.id})")
        if state.current == bundle.id:
            return
        old_current, old_previous = state.current, state.previous

        def relink() -> None:
            self._link(remote, "current", old_current)
            self._link(remote, "previous", old_previous)

        undo.push("point current and previous back", relink)
        self._link(remote, "current", bundle.id)
        if old_current is not None:
            self._link(remote, "previous", old_current)
            self._changes.append(f"kept runwatch {release_version(old_current)} for rollback")

    def _put_token(self, remote: RemoteHost, undo: UndoLog, state: HostState) -> None:
        """Enrol the host unless its token file holds the token the collector knows."""
        self._progress("enrolling")
        collector, name = self.context.collector, self.target.name
        known = collector.token_fingerprint(name)
        if (
            state.token is not None
            and known is not None
            and token_fingerprint(state.token) == known
        ):
            return
        if collector.restore(name, "deployed again"):  # a removed host comes back
            undo.push(
                "retire the host again", lambda: collector.retire(name, "deploy install undone")
            )
            self._changes.append("restored the retired host at the collector")
        token = collector.enrol(name, replace=known is not None)
        # A replaced token was not the host's anyway (its fingerprint differed), so revoking
        # the new one is as close to the earlier state as the API allows.
        undo.push("revoke the new token", lambda: collector.revoke(name))
        undo.push(
            "restore the token file",
            lambda: self._write(remote, self.layout.token, state.token, 0o600),
        )
        self._write(remote, self.layout.token, token + "\n", 0o600)
        self._changes.append("enrolled the host at the collector")

    def _rollback(self, remote: RemoteHost, undo: UndoLog) -> Outcome:
        state = self._probe(remote)
        if state.manifest is None or state.current is None:
            raise DeployError("runwatch is not installed here; nothing to roll back")
        if state.previous is None or state.previous not in state.releases:
            raise DeployError(
                "no earlier version is kept here (there is one only after an upgrade)"
            )
        service = self._service(state)
        current, previous = state.current, state.previous
        was_running = service.pid(remote)
        undo.push(
            "put the agent back as it was",
            lambda: self._back_as_before(remote, service, was_running),
        )

        def relink() -> None:
            self._link(remote, "current", current)
            self._link(remote, "previous", previous)

        undo.push("point current and previous back", relink)
        self._link(remote, "current", previous)
        self._link(remote, "previous", current)
        version = release_version(previous)
        self._progress("restarting the agent")
        self._restart_and_confirm(remote, service, version)
        self._write_manifest(remote, service, previous)
        self._changes.append(f"rolled back from runwatch {release_version(current)} to {version}")
        self._version = version
        self._detail = f"runwatch {version}, {service.kind}"
        return "changed"

    def _status(self, remote: RemoteHost, undo: UndoLog) -> Outcome:
        state = self._probe(remote)
        if state.manifest is None or state.current is None:
            raise DeployError(f"runwatch is not installed here (install root {self.layout.root})")
        service = self._service(state)
        version = release_version(state.current)
        self._version = version
        pid = service.pid(remote)
        collector = self.context.collector
        record = collector.host_record(self.target.name)
        known = collector.token_fingerprint(self.target.name)
        problems = []
        if pid is None:
            problems.append("the agent is not running")
        if state.token is None or known is None or token_fingerprint(state.token) != known:
            problems.append("its token is not the one the collector knows")
        if record is None:
            problems.append("the collector has no report from it")
            last = "no report yet"
        else:
            last = f"last report {units.ago(record['last_report_at'], self.context.wall())}"
            if record["state"] == "STALE":
                problems.append(f"it is STALE at the collector ({last})")
        running = f"pid {pid}" if pid is not None else "not running"
        self._detail = f"runwatch {version}, {service.kind} {running}, {last}"
        if problems:
            raise DeployError("; ".join(problems))
        return "ok"

    def _remove(self, remote: RemoteHost, undo: UndoLog) -> Outcome:
        state = self._probe(remote)
        layout, collector, q = self.layout, self.context.collector, shlex.quote
        if state.root_exists and state.manifest is None:
            raise DeployError(
                f"{layout.root} holds no deploy.json: deploy does not remove "
                "what it did not put there"
            )
        if state.root_exists:
            service = self._service(state)
            was_running = service.pid(remote)
            if was_running is not None:
                self._progress("stopping the agent")
                undo.push("start the agent again", lambda: service.start(remote))
                service.stop(remote)
                self._changes.append("stopped the agent")
            aside = f"{layout.root}.removing"
            undo.push(
                "put the install root back",
                lambda: self._sh(
                    remote, f"mv -T {q(aside)} {q(layout.root)}", "move the install root back"
                ),
            )
            self._sh(
                remote,
                f"rm -rf {q(aside)} && mv -T {q(layout.root)} {q(aside)}",
                "move the install root aside",
            )
        self._progress("retiring the host at the collector")
        if collector.retire(self.target.name, "removed by runwatch deploy remove"):
            undo.push(
                "restore the host at the collector",
                lambda: collector.restore(self.target.name, "deploy remove undone"),
            )
            self._changes.append("retired the host at the collector")
        self._progress("revoking the token")
        if collector.revoke(self.target.name):
            self._changes.append("revoked the token")
        undo.clear()  # the token is gone: from here on, only forward (Ctrl-C or not)
        if state.root_exists:
            with remote.uninterruptible():
                service.remove(remote)
                self._sh(remote, f"rm -rf {q(layout.root)}.removing", "delete the files")
            self._changes.append(f"deleted {layout.root}")
        self._detail = "removed" if self._changes else "nothing installed"
        return "changed" if self._changes else "unchanged"
