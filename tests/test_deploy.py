"""`runwatch deploy` end to end: real sshd hosts on loopback, a real collector, real agents.

Three good hosts (127.0.0.2-4) and three bad ones: nothing listening (127.0.0.5), a host key
that differs from known_hosts (127.0.0.6) and a host that refuses our key (127.0.0.7).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.deploy.bundle import BundleBuilder, find_source
from checks.schema import SCHEMA_VERSION
from runwatch import __version__
from tests.helpers import RUNWATCH, write_collector_yaml
from tests.procs import Processes, get_json, post_report, read_url, wait_for
from tests.sshd import free_port, keygen, sshd_path, start_sshd
from tests.test_packaging import _build_wheel, _fresh_venv, _pip_install

GOOD = ("good1", "good2", "good3")
BAD = ("nobody-listens", "changed-key", "refuses-key")


@dataclass
class Fleet:
    directory: Path
    inventory: Path
    collector_url: str
    operator_token: str
    roots: dict[str, Path]
    cache_dir: Path
    bundle_seconds: float

    def deploy(self, *args: str, timeout: float = 300) -> tuple[int, list[dict[str, Any]], str]:
        """Run `runwatch deploy ARGS --json`; return the exit code, the rows and stderr."""
        result = subprocess.run(
            [RUNWATCH, "deploy", *args, "--inventory", str(self.inventory), "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        rows = json.loads(result.stdout) if result.stdout.strip() else []
        return result.returncode, rows, result.stderr

    def api(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.collector_url + path,
            method=method,
            headers={"Authorization": f"Bearer {self.operator_token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def hosts(self) -> dict[str, dict[str, Any]]:
        return {h["host"]: h for h in get_json(f"{self.collector_url}/api/v1/hosts")}


def _stop_agents(roots: dict[str, Path]) -> None:
    """Stop the supervisors deploy started (they are this test's processes), by their PIDs."""
    for root in roots.values():
        for pid_file in (
            root / "run" / "agent.pid",
            root.with_name(root.name + ".removing") / "run" / "agent.pid",
        ):
            try:
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    sshd = sshd_path()
    if sshd is None:
        pytest.skip("sshd not installed (Debian package: openssh-server)")
    if find_source() is None:
        pytest.skip("the bundle is built from a source checkout; runwatch is not run from one")
    directory = tmp_path_factory.mktemp("deploy")
    processes = Processes()
    roots: dict[str, Path] = {}
    try:
        yield _make_fleet(directory, processes, sshd, roots)
    finally:
        _stop_agents(roots)
        processes.stop_all()


def _make_fleet(directory: Path, processes: Processes, sshd: str, roots: dict[str, Path]) -> Fleet:
    key = directory / "id_ed25519"
    ours = keygen(key)
    theirs = keygen(directory / "someone_else")
    hosts = {
        "good1": start_sshd(processes, sshd, directory / "sshd-good1", "127.0.0.2", ours),
        "good2": start_sshd(processes, sshd, directory / "sshd-good2", "127.0.0.3", ours),
        "good3": start_sshd(processes, sshd, directory / "sshd-good3", "127.0.0.4", ours),
        "changed-key": start_sshd(processes, sshd, directory / "sshd-changed", "127.0.0.6", ours),
        "refuses-key": start_sshd(processes, sshd, directory / "sshd-refuses", "127.0.0.7", theirs),
    }
    lines = [
        f"[{h.address}]:{h.port} {h.host_key_pub}"
        for name, h in hosts.items()
        if name != "changed-key"
    ]
    impostor = keygen(directory / "impostor_host_key")
    changed = hosts["changed-key"]
    lines.append(f"[{changed.address}]:{changed.port} {impostor}")
    (directory / "known_hosts").write_text("\n".join(lines) + "\n")

    collector_yaml = write_collector_yaml(
        directory / "collector.yaml",
        directory / "collector",
        {"ops": {"sink": "helpdesk", "assign": "Ops"}},
        evaluation_interval="1s",
    )
    operator = subprocess.run(
        [RUNWATCH, "token", "add", "deployer", "--operator", "--config", str(collector_yaml)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    token_file = directory / "operator.token"
    token_file.write_text(operator + "\n")
    token_file.chmod(0o600)
    collector = processes.runwatch("collector", collector_yaml, stderr=subprocess.PIPE)
    url = read_url(collector)

    entries: dict[str, dict[str, Any]] = {}
    for name in GOOD + BAD:
        roots[name] = directory / "roots" / name
        if name == "nobody-listens":
            address, port = "127.0.0.5", free_port("127.0.0.5")
        else:
            address, port = hosts[name].address, hosts[name].port
        entries[name] = {
            "address": address,
            "port": port,
            "groups": ["fleet"],
            "install_root": str(roots[name]),
        }
    inventory = directory / "inventory.yaml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "collector": {"url": url, "operator_token_file": "operator.token"},
                "known_hosts": "known_hosts",
                "groups": {
                    "fleet": {
                        "user": "root",
                        "key": "id_ed25519",
                        "report_timeout": "60s",
                        "python": "python3",
                        "vars": {
                            "interval": "2s",
                            "checks": [{"type": "memory"}, {"type": "load"}],
                        },
                    }
                },
                "hosts": entries,
            },
            sort_keys=False,
        )
    )
    # The bundle is built once per machine and cached; time it apart from the install.
    cache_dir = directory / "bundles"
    started = time.monotonic()
    source = find_source()
    assert source is not None
    BundleBuilder(cache_dir).build(source)
    return Fleet(directory, inventory, url, operator, roots, cache_dir, time.monotonic() - started)


def _by_host(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["host"]: row for row in rows}


def _report_status(url: str, token: str, host: str) -> int:
    """POST a minimal report as `host` with `token`; return the HTTP status."""
    body = json.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "host": host,
            "agent_version": "test",
            "boot_id": "b",
            "seq": 1_000_000,
            "sent_at": time.time(),
            "interval_seconds": 2.0,
            "measurements": [],
            "checks": [],
        }
    ).encode()
    return post_report(url, token, body, timeout=5)


def _bumped_source(directory: Path, version: str) -> Path:
    """A copy of the source tree that builds runwatch `version` (the upgrade's new release)."""
    source = find_source()
    assert source is not None
    copy = directory / f"source-{version}"
    if copy.exists():
        return copy
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("agent", "checks", "collector", "config", "runwatch"):
        shutil.copytree(source / name, copy / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(source / name, copy / name)
    init = copy / "runwatch" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{__version__}"', f'"{version}"'))
    return copy


@pytest.mark.slow
def test_install_again_upgrade_rollback_status_remove(fleet: Fleet) -> None:
    cache = ["--cache-dir", str(fleet.cache_dir)]

    # -- install on all six: the good ones report, each bad one says why ---------------------
    started = time.monotonic()
    code, rows, stderr = fleet.deploy("install", *cache)
    install_seconds = time.monotonic() - started
    assert code == 1, stderr
    # Run from a checkout without --source: that checkout is bundled, and the output says so.
    assert f"from the checkout runwatch runs from ({find_source()})" in stderr
    results = _by_host(rows)
    assert set(results) == set(GOOD + BAD)
    for name in GOOD:
        assert results[name]["result"] == "changed", results[name]
        assert results[name]["version"] == __version__
    assert "connection refused" in results["nobody-listens"]["error"]
    assert "CHANGED" in results["changed-key"]["error"]
    assert "refused key" in results["refuses-key"]["error"]
    for name in BAD:
        assert results[name]["result"] == "failed"
        assert not fleet.roots[name].exists()
    hosts = fleet.hosts()
    assert set(GOOD) <= set(hosts)
    assert not set(BAD) & set(hosts)
    assert {hosts[name]["agent_version"] for name in GOOD} == {__version__}
    for name in GOOD:
        token = fleet.roots[name] / "etc" / "agent.token"
        assert token.stat().st_mode & 0o777 == 0o600
        config = yaml.safe_load((fleet.roots[name] / "etc" / "agent.yaml").read_text())
        assert config["host"] == name
    slowest_host = max(results[name]["duration_seconds"] for name in GOOD)
    print(
        f"\ninstall on 3 hosts (+3 failing): {install_seconds:.1f}s wall, slowest host "
        f"{slowest_host:.1f}s; bundle built once beforehand in {fleet.bundle_seconds:.1f}s",
        file=sys.stderr,
    )
    assert install_seconds < 60, "target: three hosts installed in under a minute"

    # -- a second install changes nothing, and says so ----------------------------------------
    pids = {name: (fleet.roots[name] / "run" / "agent.pid").read_text() for name in GOOD}
    tokens = {name: fleet.api("GET", f"/api/v1/tokens/{name}")[1] for name in GOOD}
    code, rows, stderr = fleet.deploy("install", "--hosts", "good*", *cache)
    assert code == 0, stderr
    for row in rows:
        assert row["result"] == "unchanged", row
        assert row["changes"] == []
    for name in GOOD:
        assert (fleet.roots[name] / "run" / "agent.pid").read_text() == pids[name]
        assert fleet.api("GET", f"/api/v1/tokens/{name}")[1] == tokens[name]

    # -- upgrade to a new version, keeping the old one; then roll back -----------------------
    new_version = f"{__version__}+deploytest"
    source = _bumped_source(fleet.directory, new_version)
    code, rows, stderr = fleet.deploy(
        "upgrade", "--hosts", "good*", "--source", str(source), *cache
    )
    assert code == 0, stderr
    for row in rows:
        assert row["result"] == "changed", row
        assert row["version"] == new_version
    hosts = fleet.hosts()
    assert {hosts[name]["agent_version"] for name in GOOD} == {new_version}
    for name in GOOD:
        assert os.readlink(fleet.roots[name] / "previous").startswith(f"releases/{__version__}-")

    code, rows, stderr = fleet.deploy("rollback", "--hosts", "good*")
    assert code == 0, stderr
    assert {row["result"] for row in rows} == {"changed"}
    hosts = fleet.hosts()
    assert {hosts[name]["agent_version"] for name in GOOD} == {__version__}

    code, rows, stderr = fleet.deploy("status", "--hosts", "good*")
    assert code == 0, stderr
    for row in rows:
        assert row["result"] == "ok", row
        assert f"runwatch {__version__}, process pid" in row["detail"]

    # -- remove: service stopped, files gone, token revoked ------------------------------------
    agent_tokens = {
        name: (fleet.roots[name] / "etc" / "agent.token").read_text().strip() for name in GOOD
    }
    supervisors = {name: int(pids[name]) for name in GOOD}
    code, rows, stderr = fleet.deploy("remove", "--hosts", "good*")
    assert code == 0, stderr
    for row in rows:
        assert row["result"] == "changed", row
        assert "revoked the token" in row["changes"]
    for name in GOOD:
        assert not fleet.roots[name].exists()
        assert not Path(f"/proc/{supervisors[name]}").exists()
        assert fleet.api("GET", f"/api/v1/tokens/{name}")[0] == 404
        wait_for(
            "the revoked token to be refused",
            lambda n=name: _report_status(fleet.collector_url, agent_tokens[n], n) == 401,
            timeout=5,
        )
    code, rows, _ = fleet.deploy("remove", "--hosts", "good*")
    assert code == 0
    assert {row["result"] for row in rows} == {"unchanged"}


def _inventory_with(fleet: Fleet, name: str, file: str, **settings: Any) -> Path:
    """An inventory of one host on good1's sshd, with its own install root."""
    data = yaml.safe_load(fleet.inventory.read_text())
    root = fleet.directory / "roots" / name
    fleet.roots[name] = root
    data["hosts"] = {name: {**data["hosts"]["good1"], "install_root": str(root), **settings}}
    path = fleet.directory / file
    path.write_text(yaml.safe_dump(data))
    return path


def _deploy(inventory: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [RUNWATCH, "deploy", *args, "--inventory", str(inventory), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    (row,) = json.loads(result.stdout)
    return result.returncode, row, result.stderr


@pytest.mark.slow
def test_a_failed_upgrade_and_a_failed_install_put_the_host_back(fleet: Fleet) -> None:
    """The new agent cannot start (its metrics port is taken), so no report comes: undo."""
    cache = ["--cache-dir", str(fleet.cache_dir)]
    taken = {"metrics": {"listen": fleet.collector_url.removeprefix("http://")}}
    steady = _inventory_with(fleet, "steady", "steady.yaml", report_timeout="8s")
    code, row, stderr = _deploy(steady, "install", *cache)
    assert (code, row["result"]) == (0, "changed"), row
    root = fleet.roots["steady"]
    config = (root / "etc" / "agent.yaml").read_text()
    current = os.readlink(root / "current")
    token = fleet.api("GET", "/api/v1/tokens/steady")[1]

    broken_upgrade = _inventory_with(
        fleet, "steady", "steady-broken.yaml", report_timeout="8s", vars=taken
    )
    source = _bumped_source(fleet.directory, f"{__version__}+deploytest")
    code, row, stderr = _deploy(broken_upgrade, "upgrade", "--source", str(source), *cache)
    assert code == 1, stderr
    assert "no report from steady" in row["error"]
    assert "the agent's log ends" in row["error"]
    assert "the host was put back as it was" in row["error"]
    assert os.readlink(root / "current") == current
    assert not (root / "previous").exists()
    assert [p.name for p in (root / "releases").iterdir()] == [current.removeprefix("releases/")]
    assert (root / "etc" / "agent.yaml").read_text() == config
    assert fleet.api("GET", "/api/v1/tokens/steady")[1] == token
    # The earlier agent runs again, and reports as before.
    seen = fleet.hosts()["steady"]["last_report_at"]
    wait_for(
        "the earlier agent to report again",
        lambda: fleet.hosts()["steady"]["last_report_at"] > seen,
        timeout=15,
    )
    assert fleet.hosts()["steady"]["agent_version"] == __version__
    code, row, stderr = _deploy(steady, "remove")
    assert (code, row["result"]) == (0, "changed"), row

    broken = _inventory_with(fleet, "broken", "broken.yaml", report_timeout="8s", vars=taken)
    code, row, stderr = _deploy(broken, "install", *cache)
    assert code == 1, stderr
    assert row["result"] == "failed"
    assert "no report from broken" in row["error"]
    assert "the host was put back as it was" in row["error"]
    assert not fleet.roots["broken"].exists()
    assert fleet.api("GET", "/api/v1/tokens/broken")[0] == 404
    assert "broken" not in fleet.hosts()


def _slow_python(fleet: Fleet) -> tuple[Path, Path]:
    """A host python3 that sleeps before making a venv; returns it and the file of its PID."""
    wrapper = fleet.directory / "slow-python3"
    pid_file = fleet.directory / "slow-python3.pid"
    wrapper.write_text(
        "#!/bin/sh\n"
        '# The host\'s python3, slow at "-m venv" as on a loaded host; the probe runs at speed.\n'
        'if [ "$1 $2" = "-m venv" ]; then\n'
        f"  echo $$ > {pid_file}\n"
        "  sleep 60\n"
        "fi\n"
        'exec python3 "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper, pid_file


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.slow
@pytest.mark.parametrize(
    "inherit",
    [
        pytest.param(None, id="run from a terminal"),
        # `runwatch deploy install &` in a script: sh starts it with SIGINT ignored.
        pytest.param(_ignore_sigint, id="a script's background job: SIGINT ignored at start"),
    ],
)
def test_ctrl_c_in_the_venv_step_puts_the_host_back_and_exits_130(
    fleet: Fleet, inherit: Callable[[], None] | None
) -> None:
    cache = ["--cache-dir", str(fleet.cache_dir)]
    wrapper, pid_file = _slow_python(fleet)
    slow = _inventory_with(fleet, "slow", "slow.yaml", python=str(wrapper))
    root = fleet.roots["slow"]
    # Its own session, so that SIGINT goes to its whole process group, as a terminal's Ctrl-C.
    deploy = subprocess.Popen(
        [RUNWATCH, "deploy", "install", "--inventory", str(slow), "--json", *cache],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=inherit,  # noqa: PLW1509 -- one signal call, in a single-threaded test
    )
    try:
        wait_for("deploy to reach the venv step", pid_file.exists, timeout=120)
        remote_pid = int(wait_for("the PID", lambda: pid_file.read_text().strip(), timeout=5))
        os.killpg(deploy.pid, signal.SIGINT)
        interrupted_at = time.monotonic()
        stdout, stderr = deploy.communicate(timeout=30)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.communicate()
    seconds = time.monotonic() - interrupted_at
    assert deploy.returncode == 130, stderr
    assert seconds < 10, f"deploy took {seconds:.1f}s to stop after Ctrl-C"
    (row,) = json.loads(stdout)
    assert row["result"] == "interrupted", row
    assert "interrupted while creating the venv" in row["error"]
    assert "the host was put back as it was" in row["error"]
    assert "slow: install interrupted" in stderr
    # Nothing keeps running on the host, and nothing of the install is left there.
    wait_for("the host's venv step to be stopped", lambda: _gone(remote_pid), timeout=5)
    assert not root.exists()
    assert fleet.api("GET", "/api/v1/tokens/slow")[0] == 404
    code, row, stderr = _deploy(slow, "status")
    assert (code, row["result"]) == (1, "failed"), row
    assert row["error"] == f"runwatch is not installed here (install root {root})"

    # A second run, with the host's python3 at its usual speed, completes the install.
    pid_file.unlink()
    at_speed = _inventory_with(fleet, "slow", "slow-at-speed.yaml")
    code, row, stderr = _deploy(at_speed, "install", *cache)
    assert (code, row["result"]) == (0, "changed"), (row, stderr)
    code, row, stderr = _deploy(at_speed, "status")
    assert (code, row["result"]) == (0, "ok"), row
    code, row, stderr = _deploy(at_speed, "remove")
    assert (code, row["result"]) == (0, "changed"), row


@pytest.mark.slow
def test_deploy_run_from_an_installed_wheel_bundles_that_install(
    fleet: Fleet, tmp_path: Path
) -> None:
    built = _build_wheel(tmp_path / "dist")
    python, _ = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "--no-index", str(built))
    inventory = _inventory_with(fleet, "from-wheel", "from-wheel.yaml")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # no checkout in sight
    deploy = [str(python.with_name("runwatch")), "deploy"]
    where = ["--inventory", str(inventory), "--json"]
    result = subprocess.run(
        [*deploy, "install", *where, "--cache-dir", str(tmp_path / "bundles")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert (row["result"], row["version"]) == ("changed", __version__), row
    packed = tmp_path / "bundles" / "installed" / built.name
    assert f"from the installed runwatch, packed as {packed}" in result.stderr
    assert packed.exists()
    code, row, _ = _deploy(inventory, "remove")
    assert (code, row["result"]) == (0, "changed"), row


@pytest.mark.slow
def test_remove_retires_the_hosts_and_opens_no_stale_calls(
    fleet: Fleet, processes: Processes
) -> None:
    """Three hosts deployed and removed, at a collector whose staleness has an owner: the
    retirement resolves the calls they had, and nothing else opens (no host_stale, no
    check_stale for their checks)."""
    directory = fleet.directory / "lifecycle"
    directory.mkdir(exist_ok=True)
    collector_yaml = write_collector_yaml(
        directory / "collector.yaml",
        directory / "collector",
        {"ops": {"sink": "helpdesk", "assign": "Ops"}},
        evaluation_interval="0.5s",
        staleness={"after_intervals": 3, "owner": "ops", "for": "0s"},
        rules=[
            {
                "name": "memory_in_use",
                "metric": "memory_used_ratio",
                "warning": 0.000001,
                "critical": 0.999999,
                "for": "0s",
                "owner": "ops",
            }
        ],
    )
    operator = subprocess.run(
        [RUNWATCH, "token", "add", "remover", "--operator", "--config", str(collector_yaml)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (directory / "operator.token").write_text(operator + "\n")
    (directory / "operator.token").chmod(0o600)
    url = read_url(processes.runwatch("collector", collector_yaml, stderr=subprocess.PIPE))
    data = yaml.safe_load(fleet.inventory.read_text())
    data["collector"] = {"url": url, "operator_token_file": str(directory / "operator.token")}
    data["known_hosts"] = str(fleet.directory / "known_hosts")
    data["groups"]["fleet"]["key"] = str(fleet.directory / "id_ed25519")
    names = {f"life{n}": good for n, good in enumerate(GOOD, 1)}
    for name in names:
        fleet.roots[name] = directory / "roots" / name  # stopped at the end if still there
    data["hosts"] = {
        name: {**data["hosts"][good], "install_root": str(fleet.roots[name])}
        for name, good in names.items()
    }
    inventory = directory / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(data))

    def deploy(*args: str) -> tuple[int, list[dict[str, Any]], str]:
        result = subprocess.run(
            [RUNWATCH, "deploy", *args, "--inventory", str(inventory), "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return result.returncode, json.loads(result.stdout or "[]"), result.stderr

    def calls() -> list[dict[str, Any]]:
        return list(get_json(f"{url}/api/v1/calls"))

    code, _, stderr = deploy("install", "--cache-dir", str(fleet.cache_dir))
    assert code == 0, stderr
    wait_for(
        "a call per host",
        lambda: sorted(c["host"] for c in calls() if c["status"] == "open") == sorted(names),
        timeout=30,
    )
    before = {c["id"] for c in calls()}

    code, rows, stderr = deploy("remove")
    assert code == 0, stderr
    for row in rows:
        assert "retired the host at the collector" in row["changes"], row
        assert "revoked the token" in row["changes"], row
    assert get_json(f"{url}/api/v1/hosts") == []
    retired = get_json(f"{url}/api/v1/hosts?all=true")
    assert {(h["host"], h["state"], h["retired"]["by"]) for h in retired} == {
        (name, "RETIRED", "remover") for name in names
    }
    # Three intervals (2 s) of silence make a host stale: wait five, and look again.
    time.sleep(12)
    after = calls()
    assert {c["id"] for c in after} == before, [(c["host"], c["rule"]) for c in after]
    for call in after:
        assert call["status"] == "resolved"
        events = get_json(f"{url}/api/v1/calls/{call['id']}")["events"]
        assert events[-1]["text"] == (
            f"Resolved: host {call['host']} was retired by remover: removed by runwatch deploy "
            "remove"
        )

    # A new deploy brings a removed host back: restored, enrolled again, reporting.
    code, rows, stderr = deploy("install", "--hosts", "life1", "--cache-dir", str(fleet.cache_dir))
    assert code == 0, stderr
    assert "restored the retired host at the collector" in rows[0]["changes"], rows[0]
    wait_for(
        "life1 reporting again",
        lambda: [h["host"] for h in get_json(f"{url}/api/v1/hosts")] == ["life1"],
        timeout=30,
    )
    code, rows, stderr = deploy("remove", "--hosts", "life1")
    assert code == 0, stderr
