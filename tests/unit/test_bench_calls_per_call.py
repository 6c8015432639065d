"""bench.calls_per_call: calls per masked call from two profiles' difference."""
import cProfile
import subprocess
import sys

from bench.calls_per_call import group_of


def work(n):
    return sum(len(str(i)) for i in range(n))


def test_groups_name_the_package_the_project_folder_or_the_stdlib_module():
    assert group_of("~") == "builtin"
    assert group_of("/x/.venv/lib/python3.11/site-packages/asyncpg/pool.py") == "asyncpg"
    assert group_of("/work/main/bridge/calls/flow.py") == "bridge/calls"
    assert group_of("/work/main/bridge/logs.py") == "bridge/logs"
    assert group_of("/usr/lib/python3.11/asyncio/timeouts.py") == "stdlib:timeouts.py"


def test_the_difference_of_two_runs_is_the_cost_of_one_unit_of_work(tmp_path):
    paths = []
    for units in (30, 10):
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(units):
            work(5)
        profile.disable()
        paths.append(tmp_path / f"p{units}")
        profile.dump_stats(paths[-1])
    out = subprocess.run([sys.executable, "-m", "bench.calls_per_call", *map(str, paths), "--calls", "30", "10"],
                         capture_output=True, text=True, check=True).stdout
    # work(): itself and its generator expression 6 times; sum and 5 len (str() is a type: not counted).
    assert out.startswith("calls per masked call: 13 (Python functions 7, builtins 6)"), out
