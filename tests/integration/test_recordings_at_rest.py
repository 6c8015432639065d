"""Recordings encrypted at rest, on a real PostgreSQL: served decrypted, shredded
for good, rewrapped when the master key rotates, old plaintext ones sealed (by
the command and at service start), spooled writes carrying only wrapped keys."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import subprocess
import sys
import uuid
from dataclasses import asdict
from pathlib import Path

import aiohttp
import pytest

from bridge.calls.spool import Spool
from bridge.clock import utcnow
from bridge.privacy.crypto import KeyRing, recording_key_context
from bridge.recordings import backfill
from bridge.recordings.sealed import CHUNK_SIZE, SealedFileCorrupt, new_dek, plaintext_size, read_range, seal_file
from bridge.sessions.models import SessionRequest
from bridge.store import Store
from bridge.store.errors import NotFound, StoreUnavailable
from bridge.store.recordings import RecordingRow
from tests.integration.test_api import api  # noqa: F401 (fixture; `store` comes from conftest)
from tests.support.keys import keys_file
from tests.support.recordings import store_recording
from tests.support.stack import REPO

AUDIO = b"RIFF" + os.urandom(3 * CHUNK_SIZE + 1000)


async def answered_call(store: Store, n: int) -> uuid.UUID:
    """A recorded, answered call of a live session, as the call path writes it."""
    number = f"+65600020{n:02d}"
    await store.numbers.add(number)
    session, _ = await store.sessions.create(SessionRequest(f"+65910020{n:02d}", f"+65810020{n:02d}", 600, True, "delivery_order"))
    call_id = uuid.uuid4()
    await store.calls.insert(call_id, number, f"chan-{call_id}", utcnow(), session_id=session.id,
                            disposition="answered", recorded=True)
    return call_id


def decrypt(store: Store, recording_id: uuid.UUID, path: Path, key) -> bytes:
    dek = store.keys.open(key.key_id, key.blob, recording_key_context(recording_id))
    return b"".join(read_range(path, dek, recording_id, 0, plaintext_size(path)))


async def test_the_api_streams_a_sealed_recording_decrypted_whole_and_by_range(api, store, tmp_path):
    recording_id = await store_recording(store, await answered_call(store, 1), tmp_path, AUDIO)
    url = f"/v1/recordings/{recording_id}/audio"
    on_disk = Path((await store.recordings.get(recording_id))["storage_path"]).read_bytes()

    whole = await api.get(url)
    ranges = {header: await api.get(url, headers={"Range": header})
              for header in ("bytes=65530-65545", "bytes=0-0", "bytes=-100", f"bytes={2 * CHUNK_SIZE - 1}-")}
    beyond = await api.get(url, headers={"Range": f"bytes={len(AUDIO)}-"})
    head = await api.head(url)
    meta = await (await api.get(f"/v1/recordings/{recording_id}")).json()

    assert whole.status == 200 and await whole.read() == AUDIO
    assert whole.headers["Content-Length"] == str(len(AUDIO)) and whole.headers["Content-Type"] == "audio/wav"
    expected = {"bytes=65530-65545": AUDIO[65530:65546], "bytes=0-0": AUDIO[:1], "bytes=-100": AUDIO[-100:],
                f"bytes={2 * CHUNK_SIZE - 1}-": AUDIO[2 * CHUNK_SIZE - 1:]}
    for header, part in ranges.items():
        assert part.status == 206 and await part.read() == expected[header], header
    assert ranges["bytes=65530-65545"].headers["Content-Range"] == f"bytes 65530-65545/{len(AUDIO)}"
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(AUDIO)}"
    assert head.status == 200 and head.headers["Content-Length"] == str(len(AUDIO))
    assert meta["sealed"] is True and meta["shredded_at"] is None
    assert meta["bytes"] == len(AUDIO) and meta["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    assert not on_disk.startswith(b"RIFF") and AUDIO[1000:1064] not in on_disk


async def test_a_shredded_recording_stays_on_disk_but_opens_for_no_one_and_answers_410(api, store, tmp_path):
    recording_id = await store_recording(store, await answered_call(store, 2), tmp_path, AUDIO)
    path = Path((await store.recordings.get(recording_id))["storage_path"])
    async with store.pool.acquire() as conn:  # in a caller's transaction that rolls back: nothing happens
        transaction = conn.transaction()
        await transaction.start()
        await store.recordings.shred(recording_id, conn=conn)
        await transaction.rollback()
    assert await store.recordings.key(recording_id) is not None

    shredded_at = await store.recordings.shred(recording_id)
    again = await store.recordings.shred(recording_id)
    audio = await api.get(f"/v1/recordings/{recording_id}/audio")
    meta = await (await api.get(f"/v1/recordings/{recording_id}")).json()

    assert again == shredded_at
    assert path.is_file() and await store.recordings.key(recording_id) is None
    for master_key in store.keys.keys.values():  # the key ring alone opens nothing
        with pytest.raises(SealedFileCorrupt):
            next(read_range(path, master_key, recording_id, 0, 1))
    assert audio.status == 410 and (await audio.json())["error"]["code"] == "recording_shredded"
    assert meta["shredded_at"] is not None and meta["sealed"] is True
    with pytest.raises(NotFound):
        await store.recordings.shred(uuid.uuid4())


async def test_rewrapping_moves_keys_to_the_active_master_key_so_the_old_one_can_go(store, tmp_path):
    audio = AUDIO[:5000]
    recordings = [await store_recording(store, await answered_call(store, n), tmp_path / str(n), audio)
                  for n in (3, 4, 5)]
    foreign = Store(store.pool, KeyRing.generate(), store.timeout)  # a master key this ring never held
    await store_recording(foreign, await answered_call(store, 6), tmp_path / "6", audio)
    paths = {r: Path((await store.recordings.get(r))["storage_path"]) for r in recordings}
    files_before = {r: paths[r].read_bytes() for r in recordings}
    rotated = KeyRing(dict(store.keys.keys), store.keys.active_id, store.keys.lookup_key)
    new_id = rotated.add_key()
    rotating = Store(store.pool, rotated, store.timeout)

    counts = [await rotating.recordings.rewrap_keys(batch=2) for _ in range(3)]

    assert counts == [2, 1, 0]  # the foreign key is left alone: nothing here can open it
    new_only = Store(store.pool, KeyRing({new_id: rotated.keys[new_id]}, new_id, rotated.lookup_key), store.timeout)
    for r in recordings:
        key = await new_only.recordings.key(r)
        assert key.key_id == new_id and decrypt(new_only, r, paths[r], key) == audio
        assert paths[r].read_bytes() == files_before[r], "the audio itself is not re-encrypted"


async def test_masking_recordings_seal_seals_old_plaintext_recordings_in_batches_idempotently(api, store, dsn,
                                                                                             tmp_path):
    plaintext = [await store_recording(store, await answered_call(store, n), tmp_path / str(n), AUDIO[:n * 9000],
                                       sealed=False) for n in (7, 8, 9)]
    missing = await store_recording(store, await answered_call(store, 10), tmp_path / "10", AUDIO[:10], sealed=False)
    Path((await store.recordings.get(missing))["storage_path"]).unlink()
    shredded = await store_recording(store, await answered_call(store, 11), tmp_path / "11", AUDIO[:11], sealed=False)
    shredded_plain = Path((await store.recordings.get(shredded))["storage_path"])
    await store.recordings.shred(shredded)
    old_paths = [Path((await store.recordings.get(r))["storage_path"]) for r in plaintext]
    served_before = await (await api.get(f"/v1/recordings/{plaintext[0]}/audio")).read()

    first, second = seal_command(dsn, "--batch", "2"), seal_command(dsn)

    assert served_before == AUDIO[:7 * 9000]
    assert first == "sealed 4 recording(s), skipped 1 (see the log)"
    assert second == "sealed 0 recording(s), skipped 1 (see the log)"
    for n, r, old in zip((7, 8, 9), plaintext, old_paths):
        row, key = await store.recordings.get(r), await store.recordings.key(r)
        assert row["sealed"] and not old.exists()
        assert decrypt(store, r, Path(row["storage_path"]), key) == AUDIO[:n * 9000]
        assert await (await api.get(f"/v1/recordings/{r}/audio")).read() == AUDIO[:n * 9000]
    assert not shredded_plain.exists() and await store.recordings.key(shredded) is None
    assert (await store.recordings.get(missing))["sealed"] is False


async def test_a_spooled_recording_write_carries_only_the_wrapped_key_and_replays_once(store, tmp_path):
    call_id, recording_id, dek = await answered_call(store, 12), uuid.uuid4(), new_dek()
    (tmp_path / "plain.wav").write_bytes(AUDIO[:3000])
    sealed = tmp_path / "r.sealed"
    digest = seal_file(tmp_path / "plain.wav", sealed, dek, recording_id)
    key = store.keys.seal(dek, recording_key_context(recording_id))
    row = RecordingRow(recording_id, call_id, str(sealed), "wav", digest.bytes, 0.2, digest.sha256,
                       key.key_id, key.blob)
    spool = Spool(tmp_path / "spool.jsonl")
    for _ in range(2):  # the second is a write that had in fact landed
        spool.append(call_id, "recording", asdict(row))
    text = spool.path.read_text()

    replayed = await spool.replay(store)

    assert dek.hex() not in text and base64.b64encode(dek).decode() not in text
    assert base64.b64encode(key.blob).decode() in text
    assert replayed == 2 and (await store.recordings.get(recording_id))["sealed"] is True
    assert decrypt(store, recording_id, sealed, await store.recordings.key(recording_id)) == AUDIO[:3000]


def seal_command(dsn: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "bridge.cli", "recordings", "seal", *args], cwd=REPO,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MASKING_DATABASE_URL": dsn,
                                 "MASKING_KEYS_FILE": str(keys_file())})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_a_tampered_sealed_file_is_never_served_as_audio(api, store, tmp_path):
    recording_id = await store_recording(store, await answered_call(store, 13), tmp_path, AUDIO)
    path = Path((await store.recordings.get(recording_id))["storage_path"])
    url = f"/v1/recordings/{recording_id}/audio"
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 1  # in the last chunk: the first chunks have gone out when it fails
    path.write_bytes(bytes(blob))

    early = await api.get(url, headers={"Range": f"bytes={len(AUDIO) - 10}-"})
    late = await api.get(url)

    assert early.status == 500 and (await early.json())["error"]["code"] == "internal_error"
    assert late.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):  # cut short, never a second answer inside the body
        await late.read()


async def test_the_service_seals_old_recordings_at_start_once_the_database_answers(store, tmp_path, monkeypatch):
    recording_id = await store_recording(store, await answered_call(store, 14), tmp_path, AUDIO[:4000],
                                         sealed=False)
    real, calls = store.recordings.unsealed, []

    async def down_once(after, limit):
        calls.append(after)
        if len(calls) == 1:
            raise StoreUnavailable("down")
        return await real(after, limit)

    monkeypatch.setattr(store.recordings, "unsealed", down_once)
    monkeypatch.setattr(backfill, "RETRY_SECONDS", 0.01)

    await asyncio.wait_for(backfill.seal_in_background(store, pause=0), timeout=10)

    assert len(calls) == 3  # refused, then one batch, then nothing left
    row = await store.recordings.get(recording_id)
    assert row["sealed"] and decrypt(store, recording_id, Path(row["storage_path"]),
                                     await store.recordings.key(recording_id)) == AUDIO[:4000]


async def test_two_sealing_passes_at_once_seal_each_recording_once_and_leave_no_stray_file(store, tmp_path):
    recordings = [await store_recording(store, await answered_call(store, n), tmp_path, AUDIO[:n * 3000],
                                        sealed=False) for n in range(15, 21)]

    reports = await asyncio.gather(backfill.seal_stored_recordings(store, batch=2),
                                   backfill.seal_stored_recordings(store, batch=3))

    assert sum(r.sealed for r in reports) == len(recordings)
    rows = [await store.recordings.get(r) for r in recordings]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(row["storage_path"]).name for row in rows)
    for n, row in zip(range(15, 21), rows):
        key = await store.recordings.key(row["id"])
        assert decrypt(store, row["id"], Path(row["storage_path"]), key) == AUDIO[:n * 3000]
