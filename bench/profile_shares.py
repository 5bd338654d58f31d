#!/usr/bin/env python3
"""Sum a py-spy profile of the collector by area: the share of samples in the HTTP stack,
Litestar, decoding, ingest, the store, evaluation, /metrics, logging and the rest.

Each sample is given to the area of the frame nearest its leaf that belongs to one, so a
counter's `inc()` called from ingest counts as metrics, and a SQLite call as the store.

    python bench/fleet.py --realistic ... --profile profile.txt
    python bench/profile_shares.py profile.txt [--top 15]

The profile is py-spy's raw output (`--format raw`: one folded stack and its count a line).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys

# (area, pattern on a frame's file), tried in this order on each frame from the leaf upward.
AREAS = (
    ("logging", r"^logging/"),
    ("metrics", r"^collector/metrics/|^prometheus_client/"),
    ("decode", r"^checks/schema|^msgspec/|^zlib|^gzip"),
    ("store", r"^collector/store/|^sqlite3/|^psycopg"),
    ("evaluate", r"^collector/(evaluation|incidents|services|service_levels|notify)/"),
    ("ingest", r"^collector/(ingest|view)/|^collector/app\.py"),
    ("report route", r"^collector/api/agents\.py"),
    ("guards, limits, auth", r"^collector/(api/(guards|limits)|access|auth)\.py"),
    ("other collector code", r"^collector/|^checks/|^runwatch/"),
    ("litestar", r"^litestar/|^msgspec|^multidict|^typing|^dataclasses|^inspect|^enum"),
    ("HTTP server", r"^uvicorn/|^h11/|^httptools|^granian|^uvloop|^asyncio/|^selectors|^ssl"),
)
# Leaves where a thread waits rather than works (py-spy's idle detection misses some): left
# out of the shares.
IDLE_LEAVES = re.compile(
    r"^(_worker \(concurrent/futures/thread\.py|Condition\.wait \(threading\.py|"
    r"Event\.wait \(threading\.py|\w*Selector\.select \(selectors\.py|"
    r"_Checkpointer\.run \(collector/store/sqlite\.py|Thread\._bootstrap_inner)"
)
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")


def area_of(stack: list[str]) -> str:
    for frame in reversed(stack):
        match = _FRAME.match(frame)
        if match is None:
            continue
        path = match["file"]
        for area, pattern in AREAS:
            if re.search(pattern, path):
                return area
    return "other"


def shares(lines: list[str]) -> tuple[collections.Counter[str], int]:
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if IDLE_LEAVES.match(frames[-1]):
            continue
        counts[area_of(frames)] += int(count)
        total += int(count)
    return counts, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", help="py-spy raw output")
    parser.add_argument("--top", type=int, default=0, help="also list the N hottest leaves")
    args = parser.parse_args()
    with open(args.profile, encoding="utf-8") as file:
        lines = file.readlines()
    counts, total = shares(lines)
    if not total:
        print("no samples", file=sys.stderr)
        return 1
    print(f"{total} samples (threads waiting left out)")
    for area, count in counts.most_common():
        print(f"  {area:24s} {count * 100 / total:5.1f} %")
    if args.top:
        leaves: collections.Counter[str] = collections.Counter()
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            leaf = stack.split(";")[-1]
            if count.isdigit() and not IDLE_LEAVES.match(leaf):
                leaves[leaf] += int(count)
        print("hottest leaves:")
        for leaf, count in leaves.most_common(args.top):
            print(f"  {count * 100 / total:5.1f} %  {leaf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
