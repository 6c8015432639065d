"""Python calls per masked call, from two cProfile profiles of the service.

Two runs of the same load with N and M calls (bench/cprofile/sitecustomize.py
profiles the service a benchmark starts); their difference divided by N - M
is what a call costs, start-up and imports left out:

    MASKING_CPROFILE=/tmp/p200 PYTHONPATH=bench/cprofile .venv/bin/python -m bench.masked_calls \\
        --sequential 0 --calls 200 --rate 10 --concurrent 100 --talk-ms 10000
    MASKING_CPROFILE=/tmp/p100 PYTHONPATH=bench/cprofile .venv/bin/python -m bench.masked_calls \\
        --sequential 0 --calls 100 --rate 10 --concurrent 100 --talk-ms 10000
    .venv/bin/python -m bench.calls_per_call /tmp/p200.* /tmp/p100.* --calls 200 100

Counts, not times: they do not move with the VM the way CPU seconds do.
"""
from __future__ import annotations

import argparse
import collections
import pstats


def counts(path: str) -> dict[tuple, int]:
    return {key: value[1] for key, value in pstats.Stats(path).stats.items()}


def group_of(filename: str) -> str:
    """builtin, a package of site-packages, a folder of the project, or a stdlib module."""
    if filename == "~":
        return "builtin"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0]
    for root in ("/bridge/", "/bench/", "/tests/"):
        if root in filename:
            inside = filename.split(root, 1)[1].split("/")
            return root.strip("/") + "/" + (inside[0] if len(inside) > 1 else inside[0].removesuffix(".py"))
    return "stdlib:" + filename.rsplit("/", 1)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("more", help="profile of the run with more calls")
    parser.add_argument("fewer", help="profile of the run with fewer calls")
    parser.add_argument("--calls", type=int, nargs=2, required=True, metavar=("MORE", "FEWER"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    more, fewer = counts(args.more), counts(args.fewer)
    span = args.calls[0] - args.calls[1]
    per_call = {key: (n - fewer.get(key, 0)) / span for key, n in more.items()}
    total = sum(per_call.values())
    python = sum(n for key, n in per_call.items() if key[0] != "~")
    print(f"calls per masked call: {total:,.0f} (Python functions {python:,.0f}, builtins {total - python:,.0f})")
    groups = collections.Counter()
    for key, n in per_call.items():
        groups[group_of(key[0])] += n
    for name, n in groups.most_common(args.top):
        print(f"  {n:8,.0f}  {name}")


if __name__ == "__main__":
    main()
