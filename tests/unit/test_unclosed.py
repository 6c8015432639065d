"""Which sealings a recovered recording leaves on disk (bridge/calls/unclosed.py):
only the one the database names, and none removed while it cannot be read."""
import asyncio
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from bridge.calls.unclosed import _tidy_sealings
from bridge.logs import get_logger
from bridge.recordings import StoredRecording, sealed_path, storage_path
from bridge.store.errors import StoreUnavailable


def deps_naming(named):
    async def get(call_id):
        if isinstance(named, Exception):
            raise named
        return {"recording_id": named}
    return SimpleNamespace(store=SimpleNamespace(calls=SimpleNamespace(get=get)))


@pytest.fixture
def files(tmp_path):
    call = uuid.uuid4()
    dest = storage_path(tmp_path, call, datetime(2026, 12, 7, tzinfo=timezone.utc), "wav")
    dest.parent.mkdir(parents=True)
    earlier, ours = sealed_path(dest), sealed_path(dest)
    for path in (earlier, ours):
        path.write_bytes(b"x")
    stored = StoredRecording(ours, "wav", 1, 1.0, "0" * 64, uuid.uuid4(), None)
    return call, earlier, stored


def test_ours_named_the_earlier_sealing_goes(files):
    call, earlier, stored = files
    assert asyncio.run(_tidy_sealings(deps_naming(stored.id), call, stored, get_logger("test"))) == stored.id
    assert not earlier.exists() and stored.path.exists()


def test_another_named_ours_goes_and_theirs_stays(files):
    """A FastAGI `finish` or a replayed spool kept its own row first: ours
    was dropped as a duplicate, so our file has no key; theirs must stay."""
    call, theirs, stored = files
    other = uuid.uuid4()
    assert asyncio.run(_tidy_sealings(deps_naming(other), call, stored, get_logger("test"))) == other
    assert theirs.exists() and not stored.path.exists()


@pytest.mark.parametrize("named", [None, StoreUnavailable("down")])
def test_nothing_goes_while_the_row_cannot_be_read(files, named):
    call, earlier, stored = files
    assert asyncio.run(_tidy_sealings(deps_naming(named), call, stored, get_logger("test"))) == stored.id
    assert earlier.exists() and stored.path.exists()
