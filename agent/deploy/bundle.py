"""The offline bundle: runwatch's wheel and every dependency's, built here once and cached.

Hosts install from it with `pip install --no-index`, so they need no internet. Wheels with
compiled parts (msgspec, pyyaml, psutil…) fit one Python version and machine: the bundle's
`target` says which, and a host that differs is refused before anything is uploaded.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
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
import zipfile
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


@dataclass(frozen=True)
class BundleSource:
    """What the bundle's runwatch is built from: a source tree, or a wheel file."""

    path: Path  # a directory with pyproject.toml, or a .whl
    description: str  # for the admin: "the checkout at ...", "the installed runwatch ..."


def find_source() -> Path | None:
    """The runwatch source tree this program runs from, if it runs from one."""
    here = Path(__file__).resolve().parents[2]
    pyproject = here / "pyproject.toml"
    if pyproject.is_file() and 'name = "runwatch"' in pyproject.read_text(encoding="utf-8"):
        return here
    return None


def bundle_source(given: Path | None, work_dir: Path) -> BundleSource:
    """The source to bundle: `given`, else the checkout runwatch runs from, else its install.

    An installed runwatch is packed back into a wheel under `work_dir` (its files as installed,
    with a fresh RECORD), so deploy works from a plain `pip install` too.
    """
    if given is not None:
        return BundleSource(given, f"the source given with --source ({given})")
    checkout = find_source()
    if checkout is not None:
        return BundleSource(checkout, f"the checkout runwatch runs from ({checkout})")
    wheel = wheel_of_installed(work_dir)
    if wheel is not None:
        return BundleSource(wheel, f"the installed runwatch, packed as {wheel}")
    raise DeployError(
        "runwatch runs neither from a source checkout nor from an installed distribution, "
        "so there is nothing to bundle: pass --source DIR (a runwatch checkout)"
    )


_WHEEL_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same files give the same wheel
_NOT_PACKED = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}  # written by the installer


def wheel_of_installed(directory: Path, name: str = "runwatch") -> Path | None:
    """Pack the installed distribution this code runs from into a wheel in `directory`.

    None if `name` is not installed, or if the code running is not its files (an editable
    install, or a checkout on sys.path).
    """
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    here = Path(__file__).resolve()
    files = [f for f in dist.files or [] if not f.parts or f.parts[0] != ".."]  # not bin/
    if not any(Path(str(dist.locate_file(f))).resolve() == here for f in files):
        return None
    info = next(f.parts[0] for f in files if f.parts[0].endswith(".dist-info"))
    wheel_text = Path(str(dist.locate_file(f"{info}/WHEEL"))).read_text(encoding="utf-8")
    tags = [
        line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line.startswith("Tag:")
    ]
    normalized = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    target = directory / f"{normalized}-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    members = sorted(
        str(f)
        for f in files
        if f.suffix != ".pyc"
        and "__pycache__" not in f.parts
        and not (f.parts[0] == info and f.name in _NOT_PACKED)
    )
    record = []
    directory.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            data = Path(str(dist.locate_file(member))).read_bytes()
            _add(archive, member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{member},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        _add(archive, f"{info}/RECORD", ("\n".join(record) + "\n").encode())
    part.replace(target)
    return target


def _add(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    entry = zipfile.ZipInfo(name, date_time=_WHEEL_DATE)
    entry.external_attr = 0o644 << 16
    entry.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(entry, data)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "runwatch" / "bundles"


def source_version(source: Path) -> str:
    """The version a source tree (or a wheel file) builds, from runwatch/__init__.py."""
    if source.suffix == ".whl":
        return source.name.split("-")[1]
    text = (source / "runwatch" / "__init__.py").read_text(encoding="utf-8")
    match = _VERSION.search(text)
    if match is None:
        raise DeployError(f"{source}/runwatch/__init__.py sets no __version__")
    return match.group(1)


def _source_digest(source: Path, target: BundleTarget) -> str:
    digest = hashlib.sha256(f"{target.python} {target.machine}\n".encode())
    if source.suffix == ".whl":
        digest.update(hashlib.sha256(source.read_bytes()).digest())
        return digest.hexdigest()[:12]
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
