"""A sealed recording's audio over HTTP: decrypted while streamed, byte ranges included.

Answers as `web.FileResponse` does for a plaintext file (200, 206 with
Content-Range, 416 with `bytes */size`, HEAD), with sizes and ranges in
plaintext bytes. Only the chunks a range needs are read, off the event loop.
"""
from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from aiohttp import web

from bridge.logs import get_logger
from bridge.recordings import sealed

log = get_logger("bridge.api")


class RangeNotSatisfiable(Exception):
    pass


def requested_span(rng: slice, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a `Range` header as aiohttp parses it
    (`request.http_range`), or None without one; the rules of RFC 9110 as
    `web.FileResponse` applies them."""
    start, end = rng.start, rng.stop
    if start is None:
        return None
    if start < 0 and end is None:  # bytes=-N: the last N bytes
        start, end = max(size + start, 0), size
    else:
        end = size if end is None else min(end, size)
    if start >= size:
        raise RangeNotSatisfiable(f"bytes {start}- of {size}")
    return start, end


async def stream_sealed(request: web.Request, path: Path, dek: bytes, recording_id: uuid.UUID,
                        headers: dict[str, str]) -> web.StreamResponse:
    """Raises `sealed.SealedFileError` before any byte is sent if the file does
    not open; a chunk failing later cuts the connection (never a second answer
    inside the first)."""
    size = await asyncio.to_thread(sealed.plaintext_size, path)
    try:
        span = requested_span(request.http_range, size)
    except (ValueError, RangeNotSatisfiable):
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    response = web.StreamResponse(headers={**headers, "Accept-Ranges": "bytes"})
    start, end = span or (0, size)
    if span is not None:
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    response.content_length = end - start
    pieces = sealed.read_range(path, dek, recording_id, start, end)
    try:
        piece = await asyncio.to_thread(next, pieces, b"")
        await response.prepare(request)
        while piece and request.method != "HEAD":
            await response.write(piece)
            piece = await asyncio.to_thread(next, pieces, b"")
        await response.write_eof()
    except (sealed.SealedFileError, ConnectionError) as exc:
        if not response.prepared:
            raise
        if isinstance(exc, sealed.SealedFileError):
            log.error("recording.unreadable", recording_id=str(recording_id), error=type(exc).__name__)
        if request.transport is not None:
            request.transport.close()
    finally:
        pieces.close()
    return response
