"""The offline bundle: runwatch's wheel and every dependency's, built here once and cached.

Hosts install from it with `pip install --no-index`, so they need no internet. Wheels with
compiled parts (msgspec, pyyaml, psutil…) fit one Python version and machine: the bundle's
`target` says which, and a host that differs is refused before anything is uploaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agent.deploy.errors import DeployError

log = logging.getLogger(__name__)

# The source folders runwatch's wheel is built from, and so the bundle's identity: the packages,
# and config/, whose files the wheel carries inside runwatch (runwatch/shipped.py).
_SOURCES = ("agent", "checks", "collector", "config", "runwatch")
_VERSION = re.compile(r'^__version__\s*=\s*["\']([^"\']+)["\']', re.M)


@dataclass(frozen=True)
class BundleTarget:
    """Where a bundle's wheels run: a CPython minor version and a machine (`uname -m`)."""

    python: str  # "3.11"
    machine: str  # "x86_64"

    def __str__(self) -> str:
        return f"CPython {self.python} on {self.machine}"


@dataclass(frozen=True)
class Bundle:
    """A built bundle: one tar file of wheels plus the pip wheel that installs them."""

    id: str  # "<version>-<12 hex digits>": also the release directory's name on hosts
    version: str
    target: BundleTarget
    archive: Path
    sha256: str
    wheels: tuple[str, ...]


def find_source() -> Path | None:
    """The runwatch source tree this program runs from, if it runs from one."""
    here = Path(__file__).resolve().parents[2]
    pyproject = here / "pyproject.toml"
    if pyproject.is_file() and 'name = "runwatch"' in pyproject.read_text(encoding="utf-8"):
        return here
    return None


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runwatch" / "bundles"


def source_version(source: Path) -> str:
    """The version a source tree builds, from runwatch/__init__.py."""
    text = (source / "runwatch" / "__init__.py").read_text(encoding="utf-8")
    match = _VERSION.search(text)
    if match is None:
        raise DeployError(f"{source}/runwatch/__init__.py sets no __version__")
    return match.group(1)


def _source_digest(source: Path, target: BundleTarget) -> str:
    digest = hashlib.sha256(f"{target.python} {target.machine}\n".encode())
    files = [source / "pyproject.toml"]
    for folder in _SOURCES:
        files += [
            p
            for p in sorted((source / folder).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        ]
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def local_target(python: str = sys.executable) -> BundleTarget:
    """The target of wheels built with `python`."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return BundleTarget(f"{sys.version_info[0]}.{sys.version_info[1]}", platform.machine())
    out = subprocess.run(
        [
            python,
            "-c",
            "import platform, sys; print('%d.%d' % sys.version_info[:2], platform.machine())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return BundleTarget(out[0], out[1])


class BundleBuilder:
    """Build bundles with `python -m pip wheel` into a cache keyed by version, source and target."""

    def __init__(self, cache_dir: Path, python: str = sys.executable) -> None:
        self.cache_dir = cache_dir
        self.python = python

    def build(self, source: Path) -> Bundle:
        """Return the cached bundle for `source`, building it first if there is none."""
        target = local_target(self.python)
        version = source_version(source)
        bundle_id = f"{version}-{_source_digest(source, target)}"
        place = self.cache_dir / f"{bundle_id}-cp{target.python.replace('.', '')}-{target.machine}"
        manifest = place / "manifest.json"
        if not manifest.exists():
            self._build(source, place, bundle_id, version, target)
        data = json.loads(manifest.read_text(encoding="utf-8"))
        return Bundle(
            id=data["id"],
            version=data["version"],
            target=BundleTarget(**data["target"]),
            archive=place / "bundle.tar",
            sha256=data["sha256"],
            wheels=tuple(data["wheels"]),
        )

    def _build(
        self, source: Path, place: Path, bundle_id: str, version: str, target: BundleTarget
    ) -> None:
        log.info(
            "building the bundle %s for %s (once; cached in %s)", bundle_id, target, self.cache_dir
        )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=self.cache_dir))
        try:
            wheels = work / "wheels"
            # `pip` itself rides along, so hosts need neither ensurepip nor python3-venv.
            result = subprocess.run(
                [
                    self.python,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--wheel-dir",
                    str(wheels),
                    str(source),
                    "pip",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = " / ".join(result.stderr.strip().splitlines()[-5:])
                raise DeployError(f"building the bundle failed (pip wheel): {tail}")
            names = sorted(p.name for p in wheels.glob("*.whl"))
            archive = work / "bundle.tar"
            with tarfile.open(archive, "w") as tar:
                for name in names:
                    tar.add(wheels / name, arcname=f"wheels/{name}")
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            shutil.rmtree(wheels)
            (work / "manifest.json").write_text(
                json.dumps(
                    {
                        "id": bundle_id,
                        "version": version,
                        "target": {"python": target.python, "machine": target.machine},
                        "sha256": digest,
                        "wheels": names,
                    },
                    indent=2,
                ),
                encoding="utf-8",
            )
            shutil.rmtree(place, ignore_errors=True)
            work.rename(place)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("bundle %s: %d wheels", bundle_id, len(names))
