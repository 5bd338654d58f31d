"""The docs: every config key the config classes accept is in the configuration reference.

The key paths come from the config structs themselves, found by recursion from the roots
below, so a key added to any nested struct, sink or check type is caught without listing
modules here. A key path is written as in the reference tables:

- nested structs join with dots: `limits.max_series_per_host`;
- a map of structs adds a `<name>` segment (any `<word>` is accepted): `groups.<name>.sink`;
- a list of structs marks its key with `[]`: `rules[].for`, `maintenance[].weekly[].days`;
- a tagged union (sink types, check types) has its tag key (`sinks.<name>.type`), the keys all
  its members share (`checks[].interval`), and each member's own keys. Those are looked up
  relative to the member (`api_key.env`, `repository`), and only in a section of a page
  (a heading and the text up to the next heading) that shows `type: <tag>`: the Redmine
  page for `type: redmine`, the `restic` section of the checks page for `type: restic`.

A key is documented when it is the whole of an inline code span in one of the configuration
pages (docs/configuration/ and docs/helpdesks/); fenced examples do not count.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec.inspect as mi
import pytest

from agent.config import AgentConfig
from collector.config import CollectorConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG_PAGE_DIRS = ("configuration", "helpdesks")

# The config files and the struct each one decodes into.
CONFIG_ROOTS: dict[str, type[Any]] = {
    "collector.yaml": CollectorConfig,
    "agent.yaml": AgentConfig,
}

# Keys that need not be in the reference, each with its reason. Keep it empty if you can.
UNDOCUMENTED: dict[str, str] = {}


@dataclass(frozen=True)
class KeyPath:
    """One key a config file accepts; `tag` is set for a key of one union member only."""

    config: str
    path: str
    tag: str | None = None

    def __str__(self) -> str:
        where = f" (type: {self.tag})" if self.tag else ""
        return f"{self.config}: {self.path}{where}"


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _unwrap(info: mi.Type) -> mi.Type:
    """Strip constraints (Annotated) and an optional None; keep real unions."""
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type
            continue
        if isinstance(info, mi.UnionType):
            members = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(members) == 1:
                info = members[0]
                continue
        return info


def _struct_members(info: mi.Type) -> list[mi.StructType] | None:
    """The structs of a struct or tagged-union type, else None (a leaf value)."""
    if isinstance(info, mi.StructType):
        return [info]
    if isinstance(info, mi.UnionType):
        structs = [_unwrap(t) for t in info.types]
        if structs and all(isinstance(s, mi.StructType) for s in structs):
            return [s for s in structs if isinstance(s, mi.StructType)]
    return None


def _walk(
    info: mi.Type, prefix: str, config: str, tag: str | None, seen: frozenset[type[Any]]
) -> Iterator[KeyPath]:
    info = _unwrap(info)
    if isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        item = _unwrap(info.item_type)
        if _struct_members(item) is not None:
            yield from _walk(item, prefix + "[]", config, tag, seen)
            return
    if isinstance(info, mi.DictType):
        value = _unwrap(info.value_type)
        if _struct_members(value) is not None:
            yield from _walk(value, _join(prefix, "<name>"), config, tag, seen)
            return
    members = _struct_members(info)
    if members is None:
        yield KeyPath(config, prefix, tag)
        return
    if len(members) == 1 and members[0].tag is None:
        struct = members[0]
        if struct.cls in seen:  # a recursive type: its keys are listed where it first appears
            return
        for field in struct.fields:
            yield from _walk(
                field.type, _join(prefix, field.encode_name), config, tag, seen | {struct.cls}
            )
        return
    # A tagged union: the tag, the keys every member has, then each member's own keys.
    tag_fields = {m.tag_field for m in members}
    assert len(tag_fields) == 1, f"{prefix}: members disagree on their tag field"
    (tag_field,) = tag_fields
    yield KeyPath(config, _join(prefix, str(tag_field)), tag)
    names = [{f.encode_name for f in m.fields} for m in members]
    shared = set.intersection(*names)
    for field in members[0].fields:
        if field.encode_name in shared:
            yield from _walk(
                field.type, _join(prefix, field.encode_name), config, tag, seen | {members[0].cls}
            )
    for member in members:
        for field in member.fields:
            if field.encode_name not in shared:
                yield from _walk(
                    field.type, field.encode_name, config, str(member.tag), seen | {member.cls}
                )


def config_keys() -> list[KeyPath]:
    """Every key path the config roots accept, recursively."""
    keys: list[KeyPath] = []
    for config, root in CONFIG_ROOTS.items():
        for key in _walk(mi.type_info(root), "", config, None, frozenset()):
            if key not in keys:
                keys.append(key)
    return keys


# -- reading the docs ---------------------------------------------------------------------------

_FENCE = re.compile(r"^ *(```|~~~).*?^ *\1 *$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_HEADING = re.compile(r"^#{1,6} ", re.M)
_PLACEHOLDER = re.compile(r"<[^<>]*>")


def _normal(key: str) -> str:
    return _PLACEHOLDER.sub("<>", key.strip())


def code_spans(markdown: str) -> set[str]:
    """The inline code spans of a page, outside fenced blocks, normalised."""
    text = _FENCE.sub("", markdown)
    return {_normal(m.group(2)) for m in _CODE_SPAN.finditer(text)}


def config_pages() -> dict[Path, str]:
    pages: dict[Path, str] = {}
    for name in CONFIG_PAGE_DIRS:
        for page in sorted((DOCS / name).glob("*.md")):
            pages[page] = page.read_text(encoding="utf-8")
    return pages


def sections(markdown: str) -> list[str]:
    """A page cut at every heading: each piece is one heading and its own text."""
    starts = [m.start() for m in _HEADING.finditer(markdown)]
    bounds = [0, *starts, len(markdown)]
    return [markdown[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def missing_keys(keys: list[KeyPath], pages: dict[Path, str]) -> list[KeyPath]:
    everywhere: set[str] = set()
    for text in pages.values():
        everywhere |= code_spans(text)
    by_tag: dict[str, set[str]] = {}
    for text in pages.values():
        for section in sections(text):
            for tag in re.findall(r"\btype: *([A-Za-z0-9_]+)\b", section):
                by_tag.setdefault(tag, set()).update(code_spans(section))
    missing = []
    for key in keys:
        if str(key) in UNDOCUMENTED:
            continue
        found = everywhere if key.tag is None else by_tag.get(key.tag, set())
        if _normal(key.path) not in found:
            missing.append(key)
    return missing


# -- the tests ----------------------------------------------------------------------------------


def test_the_walker_finds_nested_map_list_and_union_keys() -> None:
    """The walker itself: a key of each kind it must reach is among the keys it lists."""
    keys = {str(k) for k in config_keys()}
    for expected in (
        "collector.yaml: limits.max_series_per_host",
        "collector.yaml: operators.read_api",
        "collector.yaml: groups.<name>.route",
        "collector.yaml: rules[].for",
        "collector.yaml: maintenance[].weekly[].days",
        "collector.yaml: host_groups[].thresholds.<name>.warning",
        "collector.yaml: sinks.<name>.type",
        "collector.yaml: url (type: redmine)",
        "collector.yaml: api_key.env (type: redmine)",
        "collector.yaml: body_template (type: webhook)",
        "agent.yaml: collector.url",
        "agent.yaml: spool.max_age",
        "agent.yaml: checks[].type",
        "agent.yaml: checks[].timeout",
        "agent.yaml: repository (type: restic)",
        "agent.yaml: exclude_mountpoints (type: filesystem)",
    ):
        assert expected in keys, f"{expected} not found by the walker"
    assert len(keys) > 250


def test_the_matcher_scopes_member_keys_to_their_section() -> None:
    page = (
        "# Redmine\n\nUse `type: redmine`.\n\n| key |\n|---|\n| `api_key.env` |\n\n"
        "# RT\n\n```yaml\nsinks: {rt: {type: rt}}\n```\n\nAlso `project`.\n\n"
        "```yaml\n# `queue` in a fence does not count\n```\n"
    )
    keys = [
        KeyPath("c", "api_key.env", "redmine"),
        KeyPath("c", "project", "rt"),
        KeyPath("c", "queue", "rt"),
        KeyPath("c", "project", "redmine"),
        KeyPath("c", "groups.<group>.sink"),
    ]
    missing = missing_keys(keys, {Path("p.md"): page + "`groups.<name>.sink`"})
    assert [str(k) for k in missing] == ["c: queue (type: rt)", "c: project (type: redmine)"]


def test_every_config_key_is_in_the_configuration_reference() -> None:
    pages = config_pages()
    assert pages, f"no configuration pages under {DOCS}/{{{','.join(CONFIG_PAGE_DIRS)}}}"
    missing = missing_keys(config_keys(), pages)
    listed = "\n".join(f"  {key}" for key in missing)
    assert not missing, (
        f"{len(missing)} config key(s) are not documented in docs/configuration/ or "
        f"docs/helpdesks/ (as an inline code span; a union member's own keys in a section "
        f"that shows `type: <tag>`):\n{listed}"
    )


@pytest.mark.parametrize("reason", list(UNDOCUMENTED.values()) or ["none"])
def test_every_exclusion_has_a_reason(reason: str) -> None:
    assert reason.strip()


# -- the README ---------------------------------------------------------------------------------

README = ROOT / "README.md"


def test_readme_keeps_the_two_commands_and_stays_short() -> None:
    text = README.read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/runwatch up" in text
    assert "bash tests/run" in text
    assert len(text.splitlines()) <= 300, "the README is an entry point: the reference is docs/"


def test_readme_links_point_at_files_that_exist() -> None:
    text = _FENCE.sub("", README.read_text(encoding="utf-8"))
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        page = (ROOT / path).resolve()
        if not page.exists():
            broken.append(target)
        elif anchor and page.suffix == ".md":
            slugs = {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", page.read_text(), re.M)}
            if anchor not in slugs:
                broken.append(target)
    assert not broken, f"README links to missing files or anchors: {broken}"


def _slug(heading: str) -> str:
    """The anchor Python-Markdown's toc gives a heading (as mkdocs does)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


# -- command lines ------------------------------------------------------------------------------
# Every `runwatch ...` line in a shell block of the README and docs/ goes through the real parser
# (parse only, nothing runs), and every option a synopsis in running text names (`runwatch call
# ack|comment|resolve ID [--text T]`) is one each of its commands accepts.

_BLOCK_START = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+) *(?P<info>[\w-]*)")
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console"}
# Words that end one simple command of a shell line, and redirections that take the next word.
_SEPARATORS = {"|", "||", "&&", ";", "&"}
_REDIRECTIONS = {">", ">>", "<", "<<", "2>", ">&", "&>"}


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def shell_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """The command lines of a page's shell blocks, with their line numbers; a `console` block's
    commands are its `$ ` lines (the rest is output), a block without a language has only its
    `runwatch` lines taken, continuation lines are joined."""
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        start = _BLOCK_START.match(lines[index])
        index += 1
        if not start:
            continue
        indent, fence, info = len(start["indent"]), start["fence"], start["info"]
        body: list[tuple[int, str]] = []
        while index < len(lines) and not lines[index].strip().startswith(fence):
            body.append((index + 1, lines[index][indent:]))
            index += 1
        index += 1
        if info not in SHELL_BLOCKS:
            continue
        pending: tuple[int, str] | None = None
        for number, raw in body:
            line = raw
            if pending is None:
                if info == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                elif not info and not line.startswith("runwatch "):
                    continue  # a block without a language: only the lines that run runwatch
                pending = (number, "")
            pending = (pending[0], pending[1] + line.removesuffix("\\"))
            if not line.endswith("\\"):
                yield pending
                pending = None


def runwatch_argvs(line: str) -> Iterator[list[str]]:
    """The arguments of each `runwatch` a shell line runs (after `sudo`, `env` or VAR=value;
    `.venv/bin/runwatch` too)."""
    if not re.search(r"(^|[\s;|&/])runwatch\s", line):
        return  # other lines of a block may be anything: a here-document, a multi-line quote
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    command: list[str] = []
    words = iter([*lexer, ";"])
    for word in words:
        if word in _SEPARATORS:
            while command and (command[0] in ("sudo", "env") or "=" in command[0]):
                del command[0]
            if command and command[0].rsplit("/", 1)[-1] == "runwatch":
                yield command[1:]
            command = []
        elif word in _REDIRECTIONS:
            next(words, None)
        else:
            command.append(word)


def documented_command_lines() -> list[Any]:
    cases = []
    for page in doc_pages():
        for number, line in shell_lines(page.read_text(encoding="utf-8")):
            for argv in runwatch_argvs(line):
                where = f"{page.relative_to(ROOT)}:{number}"
                cases.append(pytest.param(argv, id=f"{where}: runwatch {' '.join(argv)}"))
    return cases


def parse_error(argv: list[str]) -> str | None:
    """What the real parser says against a command line, or None if it takes it."""
    from runwatch.cli import parse

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parse(argv)
    except SystemExit as exc:
        return stderr.getvalue().strip() if exc.code else None
    return None


def test_the_line_reader_finds_commands_in_every_kind_of_block() -> None:
    page = (
        "```sh\nexport X=1\nrunwatch status --json   # hosts\nsudo runwatch calls \\\n"
        "  --open | head\nRUNWATCH_COLLECTOR=u runwatch token add a > a.token && runwatch x\n"
        "pip install . && .venv/bin/runwatch up\n```\n"
        "!!! note\n    ```console\n    $ runwatch config validate f.yaml\n    f.yaml: valid\n"
        "    ```\n```yaml\nrunwatch: not a command\n```\n"
    )
    argvs = [argv for _, line in shell_lines(page) for argv in runwatch_argvs(line)]
    assert argvs == [
        ["status", "--json"],
        ["calls", "--open"],
        ["token", "add", "a"],
        ["x"],
        ["up"],
        ["config", "validate", "f.yaml"],
    ]
    assert parse_error(["x"]) and "invalid choice" in str(parse_error(["x"]))
    assert parse_error(["call", "ack", "12", "--text", "on it"]) is not None
    assert parse_error(["status", "--json"]) is None


def test_the_docs_show_command_lines() -> None:
    assert len(documented_command_lines()) > 30


@pytest.mark.parametrize("argv", documented_command_lines())
def test_every_command_line_in_the_docs_parses(argv: list[str]) -> None:
    assert parse_error(argv) is None, parse_error(argv)


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's sub-commands by name (argparse has no public way to list them)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def synopsis_problems(span: str) -> list[str]:
    """Options a synopsis names that one of its commands does not take; `a|b` means either."""
    from runwatch.cli import build_parser

    words = span.replace("\\|", "|").split()[1:]
    parsers = {"runwatch": build_parser()}
    while words:
        choices = [word.strip("[]") for word in words[0].split("|")]
        found = {
            f"{name} {choice}": commands(parser)[choice]
            for name, parser in parsers.items()
            for choice in choices
            if choice in commands(parser)
        }
        if len(found) != len(choices) * len(parsers):
            break
        parsers, words = found, words[1:]
    if list(parsers) == ["runwatch"] and words and not words[0].startswith("-"):
        return [f"`{words[0]}` is no runwatch command"]
    options = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(words))
    return [
        f"`{name}` takes no {option}"
        for name, parser in parsers.items()
        for option in options
        if option not in parser._option_string_actions
    ]


def is_synopsis(span: str) -> bool:
    """Whether a code span shows a command line: `runwatch` and a command or an option (not a
    name that starts with the word, such as a help-desk role called `runwatch tags`)."""
    from runwatch.cli import build_parser

    words = span.replace("\\|", "|").split()
    if words[:1] != ["runwatch"] or len(words) < 2:
        return False
    known = commands(build_parser())
    return "-" in span or any(word in known for word in words[1].split("|"))


def documented_synopses() -> list[Any]:
    spans = []
    for page in doc_pages():
        text = _FENCE.sub("", page.read_text(encoding="utf-8"))
        for match in _CODE_SPAN.finditer(text):
            if is_synopsis(match.group(2)):
                where = page.relative_to(ROOT)
                spans.append(pytest.param(match.group(2), id=f"{where}: {match.group(2)}"))
    return spans


def test_the_synopsis_checker_reads_alternatives() -> None:
    assert synopsis_problems("runwatch call ack\\|comment\\|resolve ID [--text T]") == [
        "`runwatch call ack` takes no --text"
    ]
    assert synopsis_problems("runwatch calls [--open] [--frob]") == [
        "`runwatch calls` takes no --frob"
    ]
    assert synopsis_problems("runwatch frob --now") == ["`frob` is no runwatch command"]
    assert is_synopsis("runwatch frob --now") and is_synopsis("runwatch call ack\\|comment ID")
    assert not is_synopsis("runwatch tags") and not is_synopsis("runwatch")
    assert synopsis_problems("runwatch outbox retry ID|--all") == []


@pytest.mark.parametrize("span", documented_synopses())
def test_every_option_a_synopsis_names_exists(span: str) -> None:
    assert synopsis_problems(span) == []


# -- the call summary ---------------------------------------------------------------------------

SUMMARY_EXAMPLE = "[web01] filesystem_full {mountpoint=/var}: 93.1% (warning >= 90.0%)"


def test_the_documented_call_summary_is_what_the_default_template_writes() -> None:
    from collector.incidents.calls import Problem
    from collector.incidents.templates import CallTemplates

    problem = Problem(
        host="web01",
        rule="filesystem_full",
        metric="fs_used_ratio",
        labels={"mountpoint": "/var"},
        severity="WARNING",
        value=0.931,
        unit="ratio",
        threshold=0.9,
        direction="above",
        group="ops",
        assign="Operations",
        first_seen=0.0,
    )
    assert CallTemplates().summary(problem) == SUMMARY_EXAMPLE
    for page in (DOCS / "helpdesks" / "call-texts.md", DOCS / "configuration" / "collector.md"):
        text = page.read_text(encoding="utf-8")
        assert SUMMARY_EXAMPLE in code_spans(text), page
        assert "`[host] rule {labels}: value (severity >= threshold)`" in text, page
