"""Which runwatch `runwatch deploy` bundles when no --source is given (issue 19).

The checkout runwatch runs from, else the installed distribution packed back into a wheel.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from agent.deploy.bundle import bundle_source, find_source, source_version, wheel_of_installed
from runwatch import __version__
from tests.test_packaging import _build_wheel, _fresh_venv, _pip_install, _runner

REPO = Path(__file__).resolve().parents[1]

FIND = """
import sys
from pathlib import Path
from agent.deploy.bundle import bundle_source
source = bundle_source(None, Path(sys.argv[1]))
print(source.path)
print(source.description)
"""


def test_run_from_a_checkout_the_checkout_is_the_source(tmp_path: Path) -> None:
    assert find_source() == REPO
    source = bundle_source(None, tmp_path)
    assert source.path == REPO
    assert source.description == f"the checkout runwatch runs from ({REPO})"
    # Code imported from a checkout is no installed distribution's: nothing to pack.
    assert wheel_of_installed(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_given_source_wins(tmp_path: Path) -> None:
    source = bundle_source(tmp_path / "src", tmp_path / "work")
    assert source.path == tmp_path / "src"
    assert "--source" in source.description


def _members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {
            name: archive.read(name) for name in archive.namelist() if not name.endswith("RECORD")
        }


@pytest.mark.slow
def test_run_from_an_installed_wheel_the_install_is_packed_back_into_that_wheel(
    tmp_path: Path,
) -> None:
    built = _build_wheel(tmp_path / "dist")
    python, _ = _fresh_venv(tmp_path / "venv")
    _pip_install(python, "--no-index", str(built))
    run = _runner(tmp_path / "elsewhere")

    path, description = run(python, "-c", FIND, tmp_path / "work").splitlines()
    packed = Path(path)
    assert packed.parent == tmp_path / "work"
    assert description == f"the installed runwatch, packed as {packed}"
    assert source_version(packed) == __version__
    # The same files, byte for byte, as the wheel that was installed.
    assert _members(packed) == _members(built)
    first = packed.read_bytes()
    run(python, "-c", FIND, tmp_path / "work")
    assert packed.read_bytes() == first, "the same install must pack to the same wheel"

    # The packed wheel installs and runs.
    again, _ = _fresh_venv(tmp_path / "venv2")
    _pip_install(again, "--no-index", str(packed))
    assert run(again.with_name("runwatch"), "--version").split()[-1] == __version__
