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

import itertools
import re
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
