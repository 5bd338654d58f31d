"""Fuzz every parser of outside input: each one returns a value or raises its named error.

Nagios perfdata, textfile `.prom` files, restic and borg JSON, the collector and agent config
YAML and the deploy inventory. No bare exception may escape: the runner would still turn it into
an error entry, but its message would not say what to change.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from agent.config import load_agent_config
from agent.deploy.inventory import load_inventory
from checks.base import CheckFailed
from checks.borg import BorgCheck, BorgOptions
from checks.command import CommandResult
from checks.plugin import parse_output, parse_perfdata
from checks.restic import ResticCheck, ResticOptions
from checks.schema import Measurement, encode
from checks.settings import ConfigError
from checks.textfile import TextfileCheck, TextfileOptions
from collector.config import load_collector_config

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

text = st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
numbers = st.one_of(
    st.floats(),
    st.integers(),
    st.sampled_from(
        ["1e999", "-1e999", "NaN", "nan", "inf", "0x10", "1_000", "١٢", "", "-", "+.", "1e", "U"]
    ),
)


def wire_safe(measurements: list[Measurement]) -> None:
    """Every measurement a parser returns passes the collector's validation."""
    for m in measurements:
        if math.isfinite(m.value):  # the agent drops non-finite values before sending
            assert msgspec.json.decode(encode(m), type=Measurement) == m


def collects_or_fails_with_check_failed(check: Any) -> None:
    """The check returns valid measurements, or raises CheckFailed with a message and valid ones."""
    try:
        wire_safe(check.collect())
    except CheckFailed as exc:
        assert str(exc)
        wire_safe(exc.measurements)


# -- Nagios plugin output and perfdata ---------------------------------------------------------

perf_items = st.builds(
    lambda label, value, uom, rest: f"{label}={value}{uom}{rest}",
    st.one_of(
        st.from_regex(r"[a-z_ ]{0,12}", fullmatch=True).map(lambda s: f"'{s}'"),
        st.from_regex(r"[^ =']{0,12}", fullmatch=True),
        text,
    ),
    numbers.map(str),
    st.sampled_from(
        ["", "%", "s", "ms", "us", "B", "KB", "MB", "GB", "TB", "c", "KiB", "°C", "\x00"]
    ),
    st.lists(
        st.one_of(numbers.map(str), st.sampled_from(["", "~:5", "@1:2", "10:"])), max_size=6
    ).map(lambda parts: "".join(";" + p for p in parts)),
)


@FUZZ
@given(
    stdout=st.one_of(
        text,
        st.lists(st.one_of(perf_items, text), max_size=8).map(
            lambda items: "OK - fine | " + " ".join(items) + "\nmore\n|" + " ".join(reversed(items))
        ),
    )
)
def test_plugin_output_parses_or_skips(stdout: str) -> None:
    out = parse_output(stdout)
    assert isinstance(out.text, str)
    for value in out.perfdata:
        assert isinstance(value.value, float)


@FUZZ
@given(perfdata=st.one_of(text, st.lists(perf_items, max_size=10).map(" ".join)))
def test_perfdata_parses_or_skips(perfdata: str) -> None:
    for value in parse_perfdata(perfdata):
        assert isinstance(value.label, str)
        assert len(value.unit) <= 32


# -- textfile .prom files ----------------------------------------------------------------------

prom_lines = st.one_of(
    text,
    st.builds(
        lambda name, labels, value, stamp: f"{name}{labels} {value}{stamp}",
        st.one_of(st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,20}", fullmatch=True), text),
        st.one_of(
            st.just(""),
            st.lists(
                st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), text), max_size=4
            ).map(
                lambda pairs: "{" + ",".join(f'{k}="{json.dumps(v)[1:-1]}"' for k, v in pairs) + "}"
            ),
            text,
        ),
        numbers.map(str),
        st.one_of(st.just(""), numbers.map(lambda n: f" {n}")),
    ),
    st.sampled_from(
        [
            "# HELP x help",
            "# TYPE x counter",
            "# TYPE x gauge",
            "# TYPE x",
            "x_total 1",
            'x{host="a"} 1',
            'x{file="a"} 1',
            "x{",
            'x{a="\\"} 1',
            "x 1 2 3",
            "\x00",
            "x +Inf",
            "x -Inf",
            "x NaN",
        ]
    ),
)


@FUZZ
@given(content=st.one_of(st.lists(prom_lines, max_size=20).map("\n".join), st.binary(max_size=500)))
def test_textfile_reads_or_fails_with_check_failed(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="runwatch-fuzz-") as folder:
        path = Path(folder) / "fuzz.prom"
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(content)
        check = TextfileCheck(TextfileOptions(directory=folder), clock=lambda: 1.8e9)
        collects_or_fails_with_check_failed(check)


def scalars(*samples: str) -> st.SearchStrategy[Any]:
    """Any JSON or YAML scalar, or one of `samples` (values the parser is known to look for)."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), text, st.sampled_from(samples)
    )


# -- restic and borg JSON ----------------------------------------------------------------------

json_values = st.recursive(
    scalars(
        "2024-01-02T03:04:05Z",
        "2024-01-02T03:04:05.123456789+02:00",
        "2024-01-02T03:04:05.000000",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "not a time",
        "2024-13-45T99:99:99Z",
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                [
                    "time",
                    "name",
                    "archives",
                    "archive",
                    "id",
                    "short_id",
                    "total_size",
                    "total_file_count",
                    "stats",
                    "duration",
                    "start",
                    "end",
                    "original_size",
                    "deduplicated_size",
                    "cache",
                    "repository",
                    "hostname",
                    "x",
                ]
            ),
            children,
            max_size=6,
        ),
    ),
    max_leaves=25,
)
command_output = st.one_of(
    json_values.map(json.dumps),
    text,
    st.sampled_from(
        ["", "null", "[]", "{}", "[null]", "[{}]", '{"archives": null}', '{"archives": [{}]}']
    ),
)


class FakeCommands:
    """Answers every command a check runs with the next fuzzed output."""

    def __init__(self, outputs: list[tuple[int, str]]) -> None:
        self._outputs = outputs
        self._index = 0

    def __call__(self, argv: Any, *, timeout: float, env: Any = None, **kw: Any) -> CommandResult:
        code, out = self._outputs[self._index % len(self._outputs)]
        self._index += 1
        return CommandResult(tuple(argv), code, out, "", 0.01)


outputs = st.lists(
    st.tuples(st.sampled_from([0, 0, 0, 1, 2, 3, 10, 12]), command_output), min_size=1, max_size=5
)


@pytest.mark.parametrize(
    ("runner", "make_check"),
    [
        pytest.param(
            "checks.restic.run_command",
            lambda: ResticCheck(
                ResticOptions(repository="/srv/restic", password_file="/etc/pass"),
                clock=lambda: 1.8e9,
            ),
            id="restic",
        ),
        pytest.param(
            "checks.borg.run_command",
            lambda: BorgCheck(
                BorgOptions(repository="/srv/borg", passcommand="echo x"), clock=lambda: 1.8e9
            ),
            id="borg",
        ),
    ],
)
@FUZZ
@given(answers=outputs)
def test_backup_json_parses_or_fails_with_check_failed(
    answers: list[tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
    runner: str,
    make_check: Callable[[], Any],
) -> None:
    monkeypatch.setattr(runner, FakeCommands(answers))
    collects_or_fails_with_check_failed(make_check())


def test_a_borg_archive_without_a_name_fails_with_check_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Found by the fuzz run above: `"name": null` in `borg list --json` crashed the check."""
    listing = '{"archives": [{"name": null, "time": "2026-11-22T09:07:38.000000"}]}'
    monkeypatch.setattr("checks.borg.run_command", FakeCommands([(0, listing)]))
    check = BorgCheck(
        BorgOptions(repository="/srv/borg", passcommand="echo x"), clock=lambda: 1.8e9
    )
    with pytest.raises(CheckFailed, match="archive name None is not a string"):
        check.collect()


# -- config YAML and the deploy inventory ------------------------------------------------------

yaml_scalars = scalars(
    "5m",
    "1h",
    "-1s",
    "0",
    "1e999",
    "*",
    "",
    "yes",
    "127.0.0.1:9330",
    "[",
    "{{ host",
    "~",
    "/tmp",
)
collector_keys = [
    "listen",
    "data_dir",
    "store",
    "agents",
    "operators",
    "sinks",
    "groups",
    "rules",
    "rule_files",
    "staleness",
    "evaluation_interval",
    "outbox",
    "limits",
    "tls",
    "host_groups",
    "parents",
    "maintenance",
    "templates",
    "name",
    "metric",
    "warning",
    "critical",
    "clear",
    "for",
    "owner",
    "type",
    "sink",
    "assign",
    "backend",
    "dsn",
    "tokens_file",
    "url",
    "x",
]
agent_keys = [
    "collector",
    "url",
    "token_file",
    "host",
    "interval",
    "checks",
    "type",
    "name",
    "spool",
    "labels",
    "repository",
    "directory",
    "command",
    "timeout",
    "x",
]
inventory_keys = [
    "hosts",
    "groups",
    "collector",
    "address",
    "user",
    "port",
    "install_root",
    "key_file",
    "url",
    "group",
    "labels",
    "x",
]


def documents(keys: list[str]) -> st.SearchStrategy[str]:
    tree = st.recursive(
        yaml_scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(keys), text), children, max_size=6),
        ),
        max_leaves=30,
    )
    return st.one_of(
        st.dictionaries(st.sampled_from(keys), tree, max_size=8).map(
            lambda d: yaml.safe_dump(d, allow_unicode=True)
        ),
        text,
        st.sampled_from(
            [
                "",
                "---",
                "- a\n- b",
                "a: [",
                "a: &x [*x]",
                "!!python/object:os.system x",
                "a: !!binary AAAA",
                "? [a]\n: b",
                "a: 1\na: 2",
                "\t x: 1",
                "a: *unknown",
                "%YAML 9.9\n--- a",
            ]
        ),
    )


def _load(loader: Any, content: str) -> None:
    with tempfile.TemporaryDirectory(prefix="runwatch-fuzz-") as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            loader(path)
        except ConfigError as exc:
            assert str(exc)


@FUZZ
@given(content=documents(collector_keys))
def test_collector_config_loads_or_fails_with_config_error(content: str) -> None:
    _load(load_collector_config, content)


@FUZZ
@given(content=documents(agent_keys))
def test_agent_config_loads_or_fails_with_config_error(content: str) -> None:
    _load(load_agent_config, content)


@FUZZ
@given(content=documents(inventory_keys))
def test_inventory_loads_or_fails_with_config_error(content: str) -> None:
    _load(load_inventory, content)


# -- the agents' tokens file (admins edit it by hand) ------------------------------------------

token_lines = st.one_of(
    text,
    st.builds(
        lambda host, digest, created: f"{host} sha256:{digest} {created}",
        st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True),
        st.from_regex(r"[0-9a-f]{0,64}", fullmatch=True),
        st.one_of(numbers.map(str), text),
    ),
    st.sampled_from(
        [
            "# comment",
            "web01",
            "web01 md5:abc",
            "web01 sha256:ab 1 2",
            "web01 sha256:ab yesterday",
            "web01 sha256:ab 1e999",
            "\x00",
        ]
    ),
)


@FUZZ
@given(lines=st.lists(token_lines, max_size=8))
def test_tokens_file_reads_or_fails_with_token_file_error(lines: list[str]) -> None:
    from collector.auth import TokenFileError, TokenVerifier, read_tokens

    with tempfile.TemporaryDirectory(prefix="runwatch-fuzz-") as folder:
        path = Path(folder) / "agents.tokens"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
        try:
            read_tokens(path)
        except TokenFileError as exc:
            assert str(exc)
        # The collector keeps working whatever the file holds: no token, no crash.
        assert TokenVerifier(path).host_for("rwt_unknown") is None
