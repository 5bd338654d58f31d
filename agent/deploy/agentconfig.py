"""Render each host's agent config from a Jinja2 template and its vars, and validate it here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import yaml

from agent.config import agent_config_from_dict
from agent.deploy.inventory import DeployTarget
from agent.deploy.layout import InstallLayout
from checks.settings import ConfigError
from runwatch.shipped import shipped_file

# Names deploy sets itself; vars of the same name are refused rather than silently ignored.
RESERVED = frozenset({"host", "collector_url", "token_file", "state_dir", "install_root"})


def default_template() -> str:
    return shipped_file("deploy/agent.yaml.j2").read_text(encoding="utf-8")


class AgentConfigRenderer:
    """Turn a host's vars into the text of its agent.yaml; ConfigError names the host."""

    def __init__(self, template: str, collector_url: str, *, source: str | None = None) -> None:
        self._environment = jinja2.Environment(  # noqa: S701 -- YAML out, not HTML  # nosec B701
            undefined=jinja2.StrictUndefined, keep_trailing_newline=True
        )
        try:
            self._template = self._environment.from_string(template)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                "template", f"line {exc.lineno}: {exc.message}", source=source
            ) from None
        self._collector_url = collector_url
        self._source = source

    @classmethod
    def from_file(
        cls, path: Path | None, collector_url: str, *, source: str | None = None
    ) -> AgentConfigRenderer:
        if path is None:
            return cls(default_template(), collector_url, source=source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                "template", f"cannot read {path}: {exc.strerror}", source=source
            ) from None
        return cls(text, collector_url, source=source)

    def render(self, target: DeployTarget, state_dir: str | None = None) -> str:
        """The agent config for `target`, validated as the agent would validate it."""
        where = f"hosts -> {target.name}"
        clash = sorted(RESERVED & set(target.vars))
        if clash:
            raise ConfigError(
                f"{where} -> vars -> {clash[0]}",
                "deploy sets this itself; choose another name",
                source=self._source,
            )
        layout = InstallLayout(target.install_root)
        context: dict[str, Any] = {
            **target.vars,
            "host": target.name,
            "collector_url": self._collector_url,
            "token_file": layout.token,
            "state_dir": state_dir or layout.state_dir,
            "install_root": target.install_root,
        }
        try:
            text = self._template.render(context)
        except jinja2.TemplateError as exc:
            raise ConfigError(
                f"{where} -> vars", f"the agent config template failed: {exc}", source=self._source
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"{where} -> vars",
                f"the rendered agent config is not valid YAML: {exc}",
                source=self._source,
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(
                f"{where} -> vars",
                "the rendered agent config is not a mapping",
                source=self._source,
            )
        try:
            agent_config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(
                f"{where} -> (agent config) -> {exc.path}", exc.message, source=self._source
            ) from None
        return text
