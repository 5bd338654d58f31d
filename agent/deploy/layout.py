"""Where deploy puts things on a host, all under the host's install root."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstallLayout:
    """Paths under the install root. `current` and `previous` are symlinks to releases."""

    root: str

    @property
    def manifest(self) -> str:
        """deploy.json: proof that the root is ours, and what is installed there."""
        return f"{self.root}/deploy.json"

    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    def release(self, bundle_id: str) -> str:
        """One venv per bundle; its name is the bundle id."""
        return f"{self.releases}/{bundle_id}"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def previous(self) -> str:
        return f"{self.root}/previous"

    @property
    def runwatch(self) -> str:
        """The runwatch command of the current release."""
        return f"{self.current}/bin/runwatch"

    @property
    def incoming(self) -> str:
        return f"{self.root}/incoming"

    @property
    def config(self) -> str:
        return f"{self.root}/etc/agent.yaml"

    @property
    def token(self) -> str:
        return f"{self.root}/etc/agent.token"

    @property
    def state_dir(self) -> str:
        return f"{self.root}/state"

    @property
    def pid_file(self) -> str:
        return f"{self.root}/run/agent.pid"

    @property
    def log_file(self) -> str:
        return f"{self.root}/log/agent.log"

    @property
    def directories(self) -> tuple[str, ...]:
        """Made at install, with mode 0700: the token and spool are nobody else's business."""
        return (
            self.releases,
            self.incoming,
            f"{self.root}/etc",
            self.state_dir,
            f"{self.root}/run",
            f"{self.root}/log",
        )


def release_version(bundle_id: str) -> str:
    """The runwatch version of a release directory named `<version>-<digest>`."""
    return bundle_id.rsplit("-", 1)[0]
