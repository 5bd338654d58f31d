"""`runwatch deploy ACTION`: check everything that can be checked here, then run the hosts."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console

from agent.deploy.actions import Action, DeployContext, HostDeployer, HostResult
from agent.deploy.agentconfig import AgentConfigRenderer
from agent.deploy.bundle import BundleBuilder, bundle_source, default_cache_dir
from agent.deploy.enrolment import CollectorClient, read_operator_token
from agent.deploy.inventory import DeployTarget, load_inventory
from agent.deploy.runner import DeployRunner, results_table
from agent.deploy.ssh import RemoteHost
from agent.deploy.stop import StopRequest
from checks.settings import ConfigError

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 130  # as a shell reports a command ended by SIGINT


@dataclass(frozen=True)
class DeployOptions:
    action: Action
    inventory: Path
    hosts: str | None = None
    parallel: int = 10
    json: bool = False
    accept_new_host_keys: bool = False
    source: Path | None = None  # runwatch source tree to bundle (default: see bundle_source)
    cache_dir: Path | None = None


def run_deploy(options: DeployOptions, out: TextIO | None = None) -> int:
    """Run the action on the selected hosts: 0 if every host succeeded, 130 if Ctrl-C stopped
    the run, else 1."""
    inventory = load_inventory(options.inventory)
    targets = inventory.select(options.hosts)
    if not targets:
        raise ConfigError(
            "--hosts",
            f"no host of {options.inventory} matches {options.hosts!r} (by name or group)",
        )
    renderer = AgentConfigRenderer.from_file(
        inventory.template, inventory.collector.url, source=inventory.source
    )
    for target in targets:
        renderer.render(target)  # every host's config is valid before any host is touched
    settings = inventory.collector
    collector = CollectorClient(
        settings.api_url or settings.url,
        read_operator_token(settings.operator_token_file),
        ca_file=settings.ca_file,
    )
    try:
        collector.check_operator()
        bundle = None
        console = Console(stderr=True)
        if options.action in ("install", "upgrade"):
            cache_dir = options.cache_dir or default_cache_dir()
            source = bundle_source(options.source, cache_dir / "installed")
            bundle = BundleBuilder(cache_dir).build(source.path)
            console.print(
                f"bundle {bundle.id} ({bundle.target}) from {source.description}",
                highlight=False,
                soft_wrap=True,
            )
        lock = threading.Lock()
        stop = StopRequest()

        def connect(target: DeployTarget) -> RemoteHost:
            return RemoteHost.connect(
                target,
                inventory.known_hosts,
                accept_new=options.accept_new_host_keys,
                lock=lock,
                stop=stop,
            )

        context = DeployContext(
            connect=connect, collector=collector, renderer=renderer, bundle=bundle, stop=stop
        )

        def work(target: DeployTarget, progress: Callable[[str], None]) -> HostResult:
            return HostDeployer(target, context, progress).run(options.action)

        runner = DeployRunner(
            targets,
            options.action,
            work,
            parallel=options.parallel,
            console=console,
            stop=stop,
        )
        results = runner.run()
    finally:
        collector.close()
    stream = out or sys.stdout
    if options.json:
        stream.write(json.dumps([r.as_json() for r in results], indent=2) + "\n")
    else:
        Console(file=stream, width=200 if not stream.isatty() else None).print(
            results_table(results, options.action)
        )
    if stop.is_set():
        return EXIT_INTERRUPTED
    return 1 if any(r.result == "failed" for r in results) else 0
