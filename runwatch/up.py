"""`runwatch up`: a collector on the embedded defaults plus an agent for this host, in one process.

A one-server shop can run exactly this in production: the data dir holds the SQLite store, the
agent's spool and its token, and everything survives a restart.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from agent.config import AgentConfig, load_agent_config
from agent.service import Agent
from checks.settings import Duration
from collector.app import CollectorService
from collector.auth import add_token, read_tokens
from collector.config import CollectorConfig, load_collector_config
from collector.server import bind, serve, url_of
from runwatch.datadir import prepare_data_dir
from runwatch.shipped import shipped_file

log = logging.getLogger(__name__)


def default_data_dir() -> Path:
    if env := os.environ.get("RUNWATCH_DATA_DIR"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/runwatch")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "runwatch"


@dataclass(frozen=True)
class UpOptions:
    listen: str
    data_dir: Path
    interval: Duration | None
    collector_config: Path | None
    agent_config: Path | None


def ensure_agent_token(tokens_file: Path, token_file: Path, host: str) -> None:
    """Give the local agent a token the first time, and keep it across restarts."""
    has_entry = any(entry.host == host for entry in read_tokens(tokens_file))
    if has_entry and token_file.exists():
        return
    token = add_token(tokens_file, host, replace=True)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    log.info("created a token for the local agent (%s) in %s", host, token_file)


def prepare(options: UpOptions) -> tuple[CollectorConfig, AgentConfig]:
    """Load both configs with the data dir and listen address applied."""
    data_dir = options.data_dir.resolve()
    collector = load_collector_config(
        options.collector_config or shipped_file("collector.yaml"),
        {"data_dir": str(data_dir), "listen": options.listen},
    )
    return collector, _agent_config(options, data_dir, collector)


def _agent_config(
    options: UpOptions, data_dir: Path, collector: CollectorConfig, url: str | None = None
) -> AgentConfig:
    host, port = collector.listen_address
    scheme = "https" if collector.tls else "http"
    target: dict[str, str] = {
        "url": url or f"{scheme}://{host}:{port}",
        "token_file": str(data_dir / "agent.token"),
    }
    if collector.tls:
        # The local agent trusts the collector's own certificate; the URL's host must be one
        # of the names in it.
        target["ca_file"] = str(collector.tls.cert_file)
    overrides: dict[str, object] = {"collector": target, "state_dir": str(data_dir / "agent")}
    if options.interval is not None:
        overrides["interval"] = float(options.interval)
    return load_agent_config(options.agent_config or shipped_file("agent.yaml"), overrides)


def run_up(options: UpOptions) -> int:
    """Start the collector and the local agent; run until Ctrl-C or SIGTERM."""
    collector_config, agent_config = prepare(options)
    data_dir = collector_config.data_dir
    prepare_data_dir(collector_config, data_dir / "agent.token")
    host, port = collector_config.listen_address
    sock = bind(host, port)
    url = url_of(sock, collector_config.tls is not None)
    # With port 0 the agent must learn the port that was really bound.
    agent_config = _agent_config(options, data_dir, collector_config, url)
    ensure_agent_token(
        collector_config.tokens_file, data_dir / "agent.token", agent_config.host_name
    )
    service = CollectorService(collector_config)
    agent = Agent(agent_config)
    thread = threading.Thread(target=agent.run, name="agent", daemon=True)
    thread.start()
    print(f"runwatch up: collector {url}  (data in {data_dir})", flush=True)
    print(
        f"  console  {url}/   sign in with an operator token (runwatch token add --operator "
        "NAME) or a user (runwatch user add NAME)",
        flush=True,
    )
    print(f"  hosts    {url}/api/v1/hosts", flush=True)
    print(f"  calls    {url}/api/v1/calls   or: runwatch calls --collector {url}", flush=True)
    print(f"  metrics  {url}/metrics", flush=True)
    print(
        f"  agent    {agent_config.host_name}, {len(agent_config.checks)} checks every "
        f"{agent_config.interval}; Ctrl-C stops both",
        flush=True,
    )
    try:
        serve(service, sock)
    finally:
        agent.stop()
        thread.join(timeout=5)
    return 0
