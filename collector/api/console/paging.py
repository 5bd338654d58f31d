"""Paged, sorted console lists: the page, page size and sort a request asks for, and the links
to other pages and sorts that keep the list's filters (templates/_paging.html draws them).

Every list is sorted and cut by the server; the links are plain links, so they work from the
keyboard, in a new tab and without script.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urlencode

_Page = TypeVar("_Page")

PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_PAGE = 10_000_000  # past any list's end: settle() moves it to the last page


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default


@dataclass(slots=True)
class Paging:
    """Where a list stands: its filters (kept in every link), sort, page and page size."""

    path: str
    filters: dict[str, str]
    sort: str
    descending: bool
    page: int = 1
    per: int = DEFAULT_PAGE_SIZE
    total: int = 0
    anchor: str = ""
    default_sort: str = ""
    descending_first: set[str] = field(default_factory=set)

    @classmethod
    def from_query(
        cls,
        path: str,
        query: Mapping[str, str],
        filters: dict[str, str],
        sorts: tuple[str, ...] | list[str],
        default_sort: str,
        *,
        descending_first: tuple[str, ...] = (),
        anchor: str = "",
    ) -> Paging:
        """The paging a request's query asks for; unknown sorts and sizes fall back."""
        sort = query.get("sort", default_sort)
        if sort not in sorts:
            sort = default_sort
        first = set(descending_first)
        wanted = query.get("dir", "")
        descending = wanted == "desc" if wanted in ("asc", "desc") else sort in first
        per = _int(query.get("per"), DEFAULT_PAGE_SIZE)
        if per not in PAGE_SIZES:
            per = DEFAULT_PAGE_SIZE
        return cls(
            path,
            {k: v for k, v in filters.items() if v},
            sort,
            descending,
            min(max(1, _int(query.get("page"), 1)), MAX_PAGE),
            per,
            anchor=anchor,
            default_sort=default_sort,
            descending_first=first,
        )

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per))

    def fetch(self, read: Callable[[], _Page], total: Callable[[_Page], int]) -> _Page:
        """The page asked for, read by `read` (it uses offset and per); read once more from the
        last page when the one asked for lies past the end."""
        found = read()
        if self.settle(total(found)):
            found = read()
        return found

    def settle(self, total: int) -> bool:
        """Note how many match; True when the page asked for lies past the end (it is moved
        to the last page: ask again)."""
        self.total = total
        if self.page > self.pages:
            self.page = self.pages
            return True
        return False

    @property
    def first(self) -> int:
        """The 1-based number of the page's first row (0 when there is none)."""
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        return min(self.offset + self.per, self.total)

    def url(self, **changes: str | int | None) -> str:
        """This list's address with some parameters changed (None drops one)."""
        params: dict[str, str | int] = dict(self.filters)
        if self.sort != self.default_sort or self.descending != (
            self.sort in self.descending_first
        ):
            params["sort"] = self.sort
            params["dir"] = "desc" if self.descending else "asc"
        if self.per != DEFAULT_PAGE_SIZE:
            params["per"] = self.per
        if self.page != 1:
            params["page"] = self.page
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        if params.get("page") == 1:
            del params["page"]
        query = urlencode(params)
        anchor = f"#{self.anchor}" if self.anchor else ""
        return self.path + (f"?{query}" if query else "") + anchor

    def page_url(self, page: int) -> str:
        return self.url(page=page)

    def sort_url(self, column: str) -> str:
        """The link of a column's header: sort by it (its natural direction first), or turn
        the current sort round; back to the first page either way."""
        same = column == self.sort
        descending = not self.descending if same else column in self.descending_first
        return self.url(sort=column, dir="desc" if descending else "asc", page=None)

    def aria_sort(self, column: str) -> str:
        if column != self.sort:
            return "none"
        return "descending" if self.descending else "ascending"

    def window(self, width: int = 2) -> list[int | None]:
        """The page numbers to link: the first, the last, and those near this one; None marks
        a gap."""
        keep = {1, self.pages, *range(self.page - width, self.page + width + 1)}
        numbers = sorted(n for n in keep if 1 <= n <= self.pages)
        out: list[int | None] = []
        for n in numbers:
            if out and n - (out[-1] or 0) > 1:
                out.append(None)
            out.append(n)
        return out
