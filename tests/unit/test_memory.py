"""The service's memory snapshots on SIGUSR2 (bridge/memory.py)."""
import asyncio
import os
import signal
import tracemalloc

from bridge import memory


async def test_sigusr2_writes_a_snapshot_of_live_allocations_while_tracing(tmp_path):
    loop = asyncio.get_running_loop()
    tracemalloc.start()
    try:
        assert memory.snapshot_on_signal(loop, tmp_path / "state")
        kept = [bytearray(1000) for _ in range(100)]
        os.kill(os.getpid(), signal.SIGUSR2)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if list((tmp_path / "state").glob("memory-*.tracemalloc")):
                break
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
        tracemalloc.stop()
    [path] = (tmp_path / "state").glob(f"memory-{os.getpid()}-1.tracemalloc")
    lines = tracemalloc.Snapshot.load(str(path)).statistics("lineno")
    assert any(s.traceback[0].filename == __file__ and s.size >= 100_000 for s in lines), kept and lines[:3]


async def test_without_tracing_no_handler_is_installed(tmp_path):
    assert not tracemalloc.is_tracing()
    assert not memory.snapshot_on_signal(asyncio.get_running_loop(), tmp_path)
