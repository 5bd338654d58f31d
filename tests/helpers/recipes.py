"""Recipes in the docs that tests run as written: the shell block after `<!-- recipe: NAME -->`."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"


def recipe(page: str, name: str) -> str:
    """The shell block that follows `<!-- recipe: NAME -->` in docs/PAGE."""
    text = (DOCS / page).read_text(encoding="utf-8")
    match = re.search(
        rf"^<!-- recipe: {re.escape(name)} -->\n```sh\n(?P<script>.*?)^```$", text, re.M | re.S
    )
    assert match, f"no recipe {name!r} in docs/{page}"
    return match["script"]


def run_recipe(
    page: str,
    name: str,
    env: dict[str, str],
    wrap: Callable[[list[str]], list[str]] = lambda argv: argv,
) -> subprocess.CompletedProcess[str]:
    """Run a recipe with bash (stopping at the first failing step) and the given variables;
    `wrap` puts what runs it as another user in front (the variables go through `env`)."""
    variables = [f"{key}={value}" for key, value in env.items()]
    return subprocess.run(
        wrap(["env", *variables, "bash", "-euo", "pipefail", "-c", recipe(page, name)]),
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
