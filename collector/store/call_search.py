"""One page of the call register, found by status, group, host, rule and text, sorted by the
store: the console lists thousands of calls without reading them all.

`CallSearch` says what to find and which page; `search_sql` turns it into the WHERE and ORDER
BY clauses both stores run (sql.py `search_calls`), every value bound. The indexes that serve
it (`calls_by_status`, `calls_by_group`, `calls_by_host`, `calls_by_rule`) are in both stores'
migrations. Text is matched anywhere in the summary, host or rule, in any case: a scan of the
rows the other filters leave, which the indexes keep to one status or group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from collector.incidents.calls import Call, CallStatus

# Worst first, as the console shows states; a host's state sorts the same way.
SEVERITY_ORDER = ("CRITICAL", "STALE", "UNKNOWN", "WARNING", "OK")
_SEVERITY_RANK = (
    "CASE severity "
    + " ".join(
        f"WHEN '{name}' THEN {len(SEVERITY_ORDER) - i}" for i, name in enumerate(SEVERITY_ORDER)
    )
    + " ELSE 0 END"
)
# The columns a list sorts by, by the name the console's links use.
SORTS = {
    "id": "id",
    "opened": "opened_at",
    "updated": "updated_at",
    "resolved": "resolved_at",
    "severity": _SEVERITY_RANK,
    "host": "host",
    "rule": "rule",
    "group": "grp",
    "status": "status",
}
MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSearch:
    """Which calls, and which page of them. Empty strings and None match everything."""

    status: CallStatus | None = None
    groups: tuple[str, ...] | None = None  # one of these groups; () matches none
    host: str = ""  # a host name, or a glob with `*`
    rule: str = ""  # a rule name, or a glob with `*`
    severity: str = ""
    text: str = ""  # anywhere in the summary, host or rule, in any case
    sort: str = "id"
    descending: bool = True
    offset: int = 0
    limit: int = 50

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"cannot sort calls by {self.sort!r}")
        if not 0 < self.limit <= MAX_LIMIT or self.offset < 0:
            raise ValueError("a page is 1 to 1000 calls from offset 0 on")


@dataclass(frozen=True, slots=True)
class CallPage:
    """One page of calls and how many match in all."""

    calls: list[Call] = field(default_factory=list)
    total: int = 0


def like_pattern(text: str, *, glob: bool) -> str:
    """A LIKE pattern (escape `\\`) for text: `%`, `_` and `\\` in it match themselves; with
    `glob`, `*` matches anything, else the text is matched anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%") if glob else f"%{escaped}%"


def search_sql(search: CallSearch, like: str) -> tuple[str, list[Any], str]:
    """The WHERE clause (maybe empty) with its arguments, and the ORDER BY clause. `like` is
    the dialect's case-blind LIKE."""
    where: list[str] = []
    args: list[Any] = []
    if search.status is not None:
        where.append("status=?")
        args.append(search.status)
    if search.groups is not None:
        if not search.groups:
            where.append("1=0")
        else:
            where.append(f"grp IN ({', '.join('?' for _ in search.groups)})")
            args.extend(search.groups)
    for column, value in (("host", search.host), ("rule", search.rule)):
        if not value:
            continue
        if "*" in value:
            where.append(f"{column} {like} ? ESCAPE '\\'")
            args.append(like_pattern(value, glob=True))
        else:
            where.append(f"{column}=?")
            args.append(value)
    if search.severity:
        where.append("severity=?")
        args.append(search.severity)
    for word in search.text.split():
        pattern = like_pattern(word, glob=False)
        where.append(
            f"(summary {like} ? ESCAPE '\\' OR host {like} ? ESCAPE '\\' "
            f"OR rule {like} ? ESCAPE '\\')"
        )
        args.extend((pattern, pattern, pattern))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    direction = "DESC" if search.descending else "ASC"
    column = SORTS[search.sort]
    # Resolved-at is NULL for open calls: they go last either way. Ties go by id.
    nulls = f"{column} IS NULL, " if search.sort == "resolved" else ""
    order = f"ORDER BY {nulls}{column} {direction}"
    if search.sort != "id":
        order += f", id {direction}"
    return clause, args, order
