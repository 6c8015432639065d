"""Checks on a downloaded recording: WAV header, storage layout, checksum."""
import hashlib
import io
import struct
import uuid
import wave
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bridge.recordings import RecordingInvalid, parse_wav_header, sha256_file, storage_path


def make_wav(seconds=1.5, rate=8000, channels=1, width=2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x00" * int(seconds * rate) * channels * width)
    return buf.getvalue()


def insert_chunk_before_data(blob: bytes, chunk_id: bytes, body: bytes) -> bytes:
    chunk = struct.pack("<4sI", chunk_id, len(body)) + body + (b"\x00" if len(body) % 2 else b"")
    at = blob.index(b"data")
    out = blob[:at] + chunk + blob[at:]
    return out[:4] + struct.pack("<I", len(out) - 8) + out[8:]


def test_mono_8khz_16bit_wav_header_is_read():
    info = parse_wav_header(make_wav(seconds=1.5))
    assert (info.channels, info.sample_rate, info.bits_per_sample) == (1, 8000, 16)
    assert info.data_bytes == 24000
    assert info.duration_seconds == pytest.approx(1.5)


def test_duration_accounts_for_channels_and_sample_width():
    assert parse_wav_header(make_wav(seconds=2, rate=16000, channels=2)).duration_seconds == pytest.approx(2)
    assert parse_wav_header(make_wav(seconds=3, width=1)).duration_seconds == pytest.approx(3)


def test_the_first_few_kilobytes_are_enough():
    assert parse_wav_header(make_wav(seconds=10)[:4096]).duration_seconds == pytest.approx(10)


def test_a_chunk_between_fmt_and_data_is_skipped():
    blob = insert_chunk_before_data(make_wav(seconds=1), b"LIST", b"INFOISFT" + b"x" * 20)
    assert parse_wav_header(blob).duration_seconds == pytest.approx(1)


def test_an_odd_sized_chunk_is_skipped_with_its_pad_byte():
    blob = insert_chunk_before_data(make_wav(seconds=1), b"junk", b"abc")
    assert parse_wav_header(blob).data_bytes == 16000


def test_empty_data_chunk_gives_zero_duration():
    assert parse_wav_header(make_wav(seconds=0)).duration_seconds == 0.0


@pytest.mark.parametrize("blob", [b"", b"RIFF", b"not a wav file at all", b"RIFF\x00\x00\x00\x00AVI LIST"])
def test_non_riff_wave_input_is_invalid(blob):
    with pytest.raises(RecordingInvalid, match="RIFF"):
        parse_wav_header(blob)


def test_wav_without_data_chunk_is_invalid():
    blob = make_wav(seconds=1)
    with pytest.raises(RecordingInvalid, match="no data chunk"):
        parse_wav_header(blob[: blob.index(b"data")])


def test_truncated_fmt_chunk_is_invalid():
    blob = make_wav(seconds=1)
    with pytest.raises(RecordingInvalid, match="truncated fmt"):
        parse_wav_header(blob[: blob.index(b"fmt ") + 8 + 6])


def test_data_before_fmt_is_invalid():
    blob = b"RIFF" + struct.pack("<I", 12) + b"WAVE" + struct.pack("<4sI", b"data", 0)
    with pytest.raises(RecordingInvalid, match="before fmt"):
        parse_wav_header(blob)


def test_storage_path_is_one_folder_per_day_named_by_call_id():
    call_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    started = datetime(2026, 3, 7, 23, 59, tzinfo=timezone.utc)
    path = storage_path(Path("/srv/rec"), call_id, started, "wav")
    assert path == Path("/srv/rec/2026/03/07/12345678-1234-5678-1234-567812345678.wav")


def test_sha256_file_matches_hashlib(tmp_path):
    data = b"\x01\x02" * 100_000  # spans several read blocks
    f = tmp_path / "r.wav"
    f.write_bytes(data)
    assert sha256_file(f) == hashlib.sha256(data).hexdigest()


class NoAri:
    """ARI that must not be asked: a recording taken from a shared spool needs no request."""

    def __getattr__(self, name):
        raise AssertionError(f"ARI asked: {name}")


class DownloadingAri:
    """Asterisk's stored recordings, over ARI."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.requests = files, []

    async def download_stored_recording(self, name, dest):
        self.requests.append(("download", name))
        blob = self.files[name]
        dest.write_bytes(blob)
        return len(blob), hashlib.sha256(blob).hexdigest(), len(blob)

    async def delete_stored_recording(self, name):
        self.requests.append(("delete", name))
        del self.files[name]


class Kept:
    """`collect`'s `keep`: what was kept, and what Asterisk still had then."""

    def __init__(self, spool: Path | None = None, ari: "DownloadingAri | None" = None):
        self.spool, self.ari, self.kept, self.left_then = spool, ari, [], []

    async def __call__(self, stored) -> None:
        self.kept.append(stored)
        self.left_then = sorted([p.name for p in self.spool.iterdir()] if self.spool else []) + sorted(
            self.ari.files if self.ari else [])


class Killed(Exception):
    pass


async def killed(stored) -> None:
    raise Killed  # the process dies before the row is safe


def opened(stored, keys) -> bytes:
    from bridge.privacy.crypto import recording_key_context
    from bridge.recordings.sealed import read_range, plaintext_size

    dek = keys.open(stored.key.key_id, stored.key.blob, recording_key_context(stored.id))
    return b"".join(read_range(stored.path, dek, stored.id, 0, plaintext_size(stored.path)))


async def test_a_recording_in_a_shared_spool_is_sealed_from_there_and_removed_with_no_request(tmp_path):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import collect

    keys, spool, audio = KeyRing.generate(), tmp_path / "spool", make_wav(2.0)
    spool.mkdir()
    (spool / "call-1.wav").write_bytes(audio)
    dest = tmp_path / "store" / "call-1.wav"

    keep = Kept(spool=spool)
    stored = await collect(NoAri(), "call-1", dest, "wav", keys, keep, shared=spool)

    assert keep.kept == [stored] and keep.left_then == ["call-1.wav"]  # kept before the spool's file went
    assert opened(stored, keys) == audio
    assert stored.sha256 == hashlib.sha256(audio).hexdigest() and stored.bytes == len(audio)
    assert abs(stored.duration_seconds - 2.0) < 0.01
    assert list(spool.iterdir()) == []
    assert [p.name for p in dest.parent.iterdir()] == [stored.path.name]  # sealed only: no plaintext copy


async def test_a_recording_still_being_written_in_the_spool_is_left_there(tmp_path):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import RecordingIncomplete, collect

    spool = tmp_path / "spool"
    spool.mkdir()
    unfinished = make_wav(1.0)
    unfinished = unfinished[:40] + struct.pack("<I", 0) + unfinished[44:]  # data size not written yet
    (spool / "call-2.wav").write_bytes(unfinished)

    with pytest.raises(RecordingIncomplete):
        await collect(NoAri(), "call-2", tmp_path / "store" / "call-2.wav", "wav", KeyRing.generate(), Kept(),
                      shared=spool)

    assert (spool / "call-2.wav").read_bytes() == unfinished
    assert not [p for p in (tmp_path / "store").iterdir()]


async def test_a_recording_not_in_the_shared_folder_is_downloaded_over_ari_and_deleted_there(tmp_path):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import collect

    keys, audio = KeyRing.generate(), make_wav(1.0)
    ari = DownloadingAri({"call-3": audio})
    (tmp_path / "elsewhere").mkdir()

    keep = Kept(ari=ari)
    stored = await collect(ari, "call-3", tmp_path / "store" / "call-3.wav", "wav", keys, keep,
                           shared=tmp_path / "elsewhere")

    assert keep.kept == [stored] and keep.left_then == ["call-3"]  # kept before Asterisk's copy went
    assert opened(stored, keys) == audio
    assert ari.requests == [("download", "call-3"), ("delete", "call-3")] and ari.files == {}


async def test_a_spool_this_host_may_read_but_not_change_leaves_the_delete_to_ari(tmp_path, monkeypatch):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import collect

    spool, audio = tmp_path / "spool", make_wav(1.0)
    spool.mkdir()
    (spool / "call-4.wav").write_bytes(audio)
    ari = DownloadingAri({"call-4": audio})

    def read_only(self, *args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "unlink", read_only)
    stored = await collect(ari, "call-4", tmp_path / "store" / "call-4.wav", "wav", KeyRing.generate(), Kept(),
                           shared=spool)
    monkeypatch.undo()

    assert stored.sha256 == hashlib.sha256(audio).hexdigest()
    assert ari.requests == [("delete", "call-4")]


@pytest.mark.parametrize("shared", [True, False])
async def test_a_process_dying_before_the_recording_is_kept_leaves_asterisks_copy(tmp_path, shared):
    """The sealed file opens only with the key its row carries: until that row
    is safe, Asterisk's copy stays for the next collection (found by
    `bench.soak --webhook`: a SIGKILL between the two lost a recording)."""
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import collect

    spool, audio = tmp_path / "spool", make_wav(1.0)
    spool.mkdir()
    ari = DownloadingAri({"call-5": audio})
    if shared:
        (spool / "call-5.wav").write_bytes(audio)

    with pytest.raises(Killed):
        await collect(ari, "call-5", tmp_path / "store" / "call-5.wav", "wav", KeyRing.generate(), killed,
                      shared=spool)

    assert ari.files == {"call-5": audio}
    assert [p.name for p in spool.iterdir()] == (["call-5.wav"] if shared else [])


async def test_a_two_channel_recording_keeps_both_parts_in_asterisk_until_it_is_kept(tmp_path):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import collect_stereo

    ari = DownloadingAri({"left": make_wav(1.0), "right": make_wav(1.0)})
    with pytest.raises(Killed):
        await collect_stereo(ari, ("left", "right"), tmp_path / "store" / "call-6.wav", KeyRing.generate(), killed)
    assert sorted(ari.files) == ["left", "right"]

    keep = Kept(ari=ari)
    stored = await collect_stereo(ari, ("left", "right"), tmp_path / "store" / "call-6.wav", KeyRing.generate(), keep)
    assert keep.kept == [stored] and keep.left_then == ["left", "right"] and ari.files == {}


async def test_a_recording_whose_row_cannot_be_kept_leaves_no_sealed_file_and_asterisks_copy(tmp_path):
    from bridge.privacy.crypto import KeyRing
    from bridge.recordings import NotKept, collect

    ari = DownloadingAri({"call-7": make_wav(1.0)})

    async def not_kept(stored):
        raise NotKept("the database is away and the spool full")

    with pytest.raises(NotKept):
        await collect(ari, "call-7", tmp_path / "store" / "call-7.wav", "wav", KeyRing.generate(), not_kept)
    assert list(ari.files) == ["call-7"] and list((tmp_path / "store").iterdir()) == []


def test_remove_unkept_takes_only_the_other_sealings_of_the_same_recording(tmp_path):
    """A sealing a killed process never kept goes; the kept one, another
    call's, and other files of the folder stay."""
    from bridge.recordings import remove_unkept, sealed_path
    call, other = uuid.uuid4(), uuid.uuid4()
    dest = storage_path(tmp_path, call, datetime(2026, 12, 7, tzinfo=timezone.utc), "wav")
    dest.parent.mkdir(parents=True)
    unkept, kept = sealed_path(dest), sealed_path(dest)
    others = [sealed_path(storage_path(tmp_path, other, datetime(2026, 12, 7, tzinfo=timezone.utc), "wav")),
              dest.with_name(dest.name + ".partial")]
    for path in (unkept, kept, *others):
        path.write_bytes(b"x")
    assert remove_unkept(kept) == 1
    assert sorted(dest.parent.iterdir()) == sorted([kept, *others])
