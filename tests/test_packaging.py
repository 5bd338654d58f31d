"""What an installed runwatch claims and ships (issue 18).

The wheel adds no generic top-level import name such as `config`: the files of the source
tree's config/ folder ship inside the `runwatch` package, and `runwatch.shipped.shipped_file`
finds them in a wheel, an editable install and a source checkout alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Every file of config/ that runwatch reads or an operator installs, by its path in config/.
SHIPPED = [
    "agent.yaml",
    "collector.yaml",
    "rules/backup.yaml",
    "rules/services.yaml",
    "rules/system.yaml",
    "deploy/agent.yaml.j2",
    "systemd/runwatch-agent.service",
    "systemd/runwatch-collector.service",
    "prometheus/runwatch-alerts.yml",
    "prometheus/prometheus.yml",
    "grafana/dashboards/runwatch-host.json",
    "grafana/provisioning/dashboards/runwatch.yaml",
]

# The wheel's top-level import names: the project's own folders, and no more (docs/packaging.md).
TOP_LEVEL = {"agent", "checks", "collector", "runwatch"}


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_in_a_source_checkout_is_the_config_folders(name: str) -> None:
    from runwatch.shipped import shipped_file

    assert shipped_file(name) == REPO / "config" / name
    assert shipped_file(name).is_file()


def test_shipped_file_names_a_folder_too() -> None:
    from runwatch.shipped import shipped_file

    assert sorted(p.name for p in shipped_file("rules").glob("*.yaml")) == [
        "backup.yaml",
        "services.yaml",
        "system.yaml",
    ]


def test_the_config_folder_is_no_package() -> None:
    # A namespace folder ranks below every installed package of the same name, so a source
    # checkout on PYTHONPATH no longer hides another distribution's `config`.
    assert not (REPO / "config" / "__init__.py").exists()


def _build_wheel(directory: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(directory),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = directory.glob("runwatch-*.whl")
    return wheel


def _fresh_venv(directory: Path) -> tuple[Path, Path]:
    """A venv without runwatch; the dependencies come from this interpreter's site-packages.

    They are listed after the venv's own, as a plain path line: no .pth of theirs runs, so no
    editable checkout leaks in. Returns the venv's python and its site-packages.
    """
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(directory)], check=True, timeout=120
    )
    python = directory / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python, purelib


def _pip_install(python: Path, *what: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            *what,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _runner(cwd: Path) -> Callable[..., str]:
    """Run a command in `cwd`, away from the checkout and without PYTHONPATH; return stdout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cwd.mkdir(exist_ok=True)

    def run(*argv: str | Path) -> str:
        result = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


# `runwatch up` and `runwatch deploy` read the shipped files: the configs with their rules, the
# agent template and the systemd unit. Prints where they were found, the rules and the checks.
USES_SHIPPED_FILES = """
from pathlib import Path
from runwatch.shipped import shipped_file
from runwatch.up import UpOptions, prepare
from agent.deploy.agentconfig import default_template
from agent.deploy.layout import InstallLayout
from agent.deploy.service import SystemdService
collector, agent = prepare(UpOptions(listen="127.0.0.1:0", data_dir=Path("data"), interval=None,
                                     collector_config=None, agent_config=None))
assert "{{" in default_template()
assert "ExecStart" in SystemdService(InstallLayout("/opt/runwatch")).unit_text()
print(shipped_file("collector.yaml"), len(collector.rules), len(agent.checks))
"""


@pytest.mark.slow
def test_the_wheel_claims_no_config_and_its_shipped_files_work_installed(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == TOP_LEVEL
    for name in SHIPPED:
        assert f"runwatch/_shipped/{name}" in names, name

    python, purelib = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "--no-index", str(wheel))
    run = _runner(tmp_path / "elsewhere")
    # `config` is nobody's import name here: not the wheel's, not the checkout's.
    assert run(python, "-c", "import importlib.util as u; print(u.find_spec('config'))") == "None\n"

    where, rules, checks = run(python, "-c", USES_SHIPPED_FILES).split()
    assert Path(where) == purelib / "runwatch" / "_shipped" / "collector.yaml"
    assert int(rules) > 10 and int(checks) > 3
    assert "valid collector config" in run(
        python.with_name("runwatch"), "config", "validate", where
    )


@pytest.mark.slow
def test_an_editable_install_finds_the_shipped_files_in_the_checkout(tmp_path: Path) -> None:
    python, _ = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "--editable", str(REPO))
    run = _runner(tmp_path / "elsewhere")

    where, rules, checks = run(python, "-c", USES_SHIPPED_FILES).split()
    assert Path(where) == REPO / "config" / "collector.yaml"
    assert int(rules) > 10 and int(checks) > 3
