"""What the bench scripts share: progress on stderr, argument types, bench/ingest.py loaded by
path, and printing the figures.

The scripts import it as `bench.common`, with the repository on sys.path but not bench/ itself:
there bench/agent.py would shadow the `agent` package. It imports only the standard library, so
the agent benchmark's check worker, which measures its own RSS, stays as small as before.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the figures."""
    print(message, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value:g}")
    return value


def load_ingest_module() -> ModuleType:
    """bench/ingest.py by path (bench/ is no package): its collector process, report factory
    and /proc helpers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("runwatch_bench_ingest", BENCH_DIR / "ingest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def show(figures: dict[str, Any], as_json: bool, print_figures: Callable[[Any], None]) -> None:
    """Print the figures as one JSON object, or as the script's own text."""
    if as_json:
        print(json.dumps(figures, indent=2))
    else:
        print_figures(figures)


def run_and_show(
    run: Callable[[Any], dict[str, Any]], args: Any, print_figures: Callable[[Any], None]
) -> dict[str, Any] | None:
    """Run a benchmark and print its figures (JSON with --json); None, said on stderr, when it
    could not run."""
    try:
        figures = run(args)
    except (RuntimeError, OSError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return None
    show(figures, args.json, print_figures)
    return figures


def apply_setting(config: dict[str, Any], setting: str) -> None:
    """Set `a.b.c=VALUE` (VALUE read as YAML) in a collector config, for --set."""
    import yaml

    path, equals, value = setting.partition("=")
    if not equals or not path:
        raise SystemExit(f"--set {setting!r}: write KEY.PATH=VALUE")
    *parents, last = path.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = yaml.safe_load(value)
