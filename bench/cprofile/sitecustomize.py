"""Profile the service a benchmark starts with cProfile, for counting calls.

Put this folder on PYTHONPATH and name a file prefix in MASKING_CPROFILE; the
service (`python -m bridge.cli serve`, and only it) then writes
`<prefix>.<pid>` when it exits. Counts are what this is for: cProfile makes
every Python call several times dearer, so its times are not the service's.
`python -m bench.calls_per_call` turns two such profiles into calls per call.
"""
import os
import sys

_OUT = os.environ.get("MASKING_CPROFILE")
if _OUT and "bridge.cli" in sys.orig_argv and "serve" in sys.orig_argv:
    import atexit
    import cProfile

    _profile = cProfile.Profile()
    _profile.enable()

    def _dump() -> None:
        _profile.disable()
        _profile.dump_stats(f"{_OUT}.{os.getpid()}")

    atexit.register(_dump)
