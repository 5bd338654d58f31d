"""Where deploy puts things on a host, all under the host's install root."""

from __future__ import annotations

from dataclasses import dataclass


class _Under:
    """A path below the install root, read as an attribute of the layout."""

    def __init__(self, relative: str) -> None:
        self._relative = relative

    def __get__(self, layout: InstallLayout, owner: object = None) -> str:
        return f"{layout.root}/{self._relative}"


@dataclass(frozen=True)
class InstallLayout:
    """Paths under the install root. `current` and `previous` are symlinks to releases."""

    root: str

    manifest = _Under("deploy.json")  # proof that the root is ours, and what is installed there
    releases = _Under("releases")  # one venv per bundle; see release()
    current = _Under("current")
    previous = _Under("previous")
    runwatch = _Under("current/bin/runwatch")  # the runwatch command of the current release
    incoming = _Under("incoming")
    config = _Under("etc/agent.yaml")
    token = _Under("etc/agent.token")
    state_dir = _Under("state")
    pid_file = _Under("run/agent.pid")
    log_file = _Under("log/agent.log")

    def release(self, bundle_id: str) -> str:
        """One venv per bundle; its name is the bundle id."""
        return f"{self.releases}/{bundle_id}"

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
