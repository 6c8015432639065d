"""ARI REST calls, typed and with precise errors.

A thin layer rather than aioari: every request the bridge makes is visible
here, with its parameters named as in the ARI documentation. Requests go over
kept-alive connections of our own (bridge/ari/http.py: a sixth of aiohttp's
CPU per request); the recording download streams over aiohttp.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

import aiohttp

from bridge import metrics
from bridge.ari.http import HttpPool, HttpUnavailable
from bridge.files import open_private


class AriError(Exception):
    """ARI answered an error status (or could not be reached)."""

    def __init__(self, status: int, method: str, path: str, message: str = ""):
        super().__init__(f"ARI {method} {path} -> {status} {message}".strip())
        self.status = status


class AriNotFound(AriError):
    """The channel, bridge or recording no longer exists (often: hung up)."""


class AriConflict(AriError):
    """The object is in the wrong state (for example: channel not in Stasis)."""


class AriNotConnected(Exception):
    """The event websocket is down: a call placed now would never hear its events."""


class AriUnreachable(AriError):
    def __init__(self, method: str, path: str, reason: str):
        super().__init__(0, method, path, f"unreachable: {reason}")


_OUTCOMES = {AriNotFound: "not_found", AriConflict: "conflict", AriUnreachable: "unreachable"}
_LABEL = re.compile(r"[A-Z]+ [A-Za-z/{}]*")  # only the templates' own words and braces

# What quote() would leave as it is: the paths of our own ids and Asterisk's.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._~:@,-]*")
# The path segment after one of these names an object (a channel, a bridge, a
# recording, the application): the operation's label shows `{id}` instead.
_NAMED_BY_NEXT = {"channels", "bridges", "playbacks", "live", "stored", "applications", "snoop"}
_VERBS = {"create", "externalMedia"}


def operation_of(method: str, path: str) -> str:
    """`POST /channels/{id}/play` for `POST /channels/1733.12/play`: a metric
    label of bounded cardinality that never carries an id (ids of ours are
    derived from call ids; none of them is a phone number, but none is needed)."""
    segments = path.split("?", 1)[0].strip("/").split("/")
    templated = [
        "{id}" if i and segments[i - 1] in _NAMED_BY_NEXT and segment not in _VERBS else segment
        for i, segment in enumerate(segments)]
    label = f"{method} /" + "/".join(templated)
    return label if _LABEL.fullmatch(label) else f"{method} other"


class _counted:
    """Count one request in `masking_ari_requests_total` by how it ended."""

    def __init__(self, method: str, path: str):
        self.operation = operation_of(method, path)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            outcome = "ok"
        elif isinstance(exc, asyncio.CancelledError):
            outcome = "cancelled"
        else:
            outcome = _OUTCOMES.get(type(exc), "error")
        metrics.ari_requests_total.counts[self.operation, outcome] += 1


def basic_auth_header(user: str, password: str) -> str:
    # aiohttp 3.14 deprecates BasicAuth; the header is simple enough to build.
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class AriClient:
    def __init__(self, base_url: str, user: str, password: str, app: str, timeout: float = 5.0):
        self.base_url = base_url.rstrip("/") + "/ari"
        self.app = app
        self.auth = basic_auth_header(user, password)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._pool = HttpPool(self.base_url, {"Authorization": self.auth}, timeout=timeout)

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(headers={"Authorization": self.auth}, timeout=self._timeout)
        return self._http

    async def close(self) -> None:
        self._pool.close()
        if self._http is not None:
            await self._http.close()

    async def __aenter__(self) -> "AriClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def request(self, method: str, path: str, params: dict | None = None, body: Any = None) -> Any:
        query = _query(params) if params else ""
        target = path if _PLAIN_PATH.fullmatch(path) else quote(path, safe="/:@,")
        target += f"?{query}" if query else ""
        with _counted(method, path):
            try:
                status, data = await self._pool.request(
                    method, target, json.dumps(body).encode() if body is not None else None)
            except HttpUnavailable as exc:
                raise AriUnreachable(method, path, exc.reason) from None
            text = data.decode("utf-8", "replace")
            if status >= 400:
                raise _error_for(status, method, path, text)
            return json.loads(text) if text else None

    # -- channels -----------------------------------------------------------
    async def ring(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/ring")

    async def ring_stop(self, channel_id: str) -> None:
        """Stop the ringback `ring` plays to an answered channel."""
        await self.request("DELETE", f"/channels/{channel_id}/ring")

    async def progress(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/progress")

    async def answer(self, channel_id: str) -> None:
        await self.request("POST", f"/channels/{channel_id}/answer")

    async def hangup(self, channel_id: str, cause: int | None = None) -> None:
        await self.request("DELETE", f"/channels/{channel_id}", {"reason_code": cause})

    async def continue_in_dialplan(self, channel_id: str, context: str, extension: str, label: str) -> None:
        """Hand a channel back to the dialplan (leaving our app) at `label`."""
        await self.request("POST", f"/channels/{channel_id}/continue",
                           {"context": context, "extension": extension, "label": label})

    async def channel(self, channel_id: str) -> dict | None:
        try:
            return await self.request("GET", f"/channels/{channel_id}")
        except AriNotFound:
            return None

    async def channel_exists(self, channel_id: str) -> bool:
        return await self.channel(channel_id) is not None

    async def play(self, channel_id: str, media: list[str], playback_id: str) -> None:
        await self.request(
            "POST", f"/channels/{channel_id}/play", {"media": ",".join(media), "playbackId": playback_id}
        )

    async def stop_playback(self, playback_id: str) -> None:
        await self.request("DELETE", f"/playbacks/{playback_id}")

    async def create_channel(
        self, endpoint: str, channel_id: str, app_args: str, originator: str | None, variables: dict[str, str]
    ) -> dict:
        """Create an outbound leg in our app without dialing it yet."""
        return await self.request(
            "POST",
            "/channels/create",
            {"endpoint": endpoint, "app": self.app, "appArgs": app_args, "channelId": channel_id,
             "originator": originator},
            {"variables": variables},
        )

    async def dial(self, channel_id: str, caller: str | None = None, timeout: int | None = None) -> None:
        await self.request("POST", f"/channels/{channel_id}/dial", {"caller": caller, "timeout": timeout})

    async def snoop(self, channel_id: str, snoop_id: str, spy: str, app_args: str) -> dict:
        return await self.request(
            "POST", f"/channels/{channel_id}/snoop",
            {"spy": spy, "app": self.app, "appArgs": app_args, "snoopId": snoop_id},
        )

    async def record_channel(self, channel_id: str, name: str, fmt: str) -> dict:
        return await self.request(
            "POST", f"/channels/{channel_id}/record",
            {"name": name, "format": fmt, "ifExists": "overwrite", "beep": False, "terminateOn": "none"},
        )

    async def list_channels(self) -> list[dict]:
        return await self.request("GET", "/channels")

    # -- bridges ------------------------------------------------------------
    async def create_bridge(self, bridge_id: str, name: str) -> dict:
        return await self.request("POST", "/bridges", {"type": "mixing", "bridgeId": bridge_id, "name": name})

    async def add_to_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        # No connected-line updates: they would carry one party's identity to the other.
        await self.request(
            "POST", f"/bridges/{bridge_id}/addChannel",
            {"channel": ",".join(channel_ids), "inhibitConnectedLineUpdates": True},
        )

    async def destroy_bridge(self, bridge_id: str) -> None:
        await self.request("DELETE", f"/bridges/{bridge_id}")

    async def bridge(self, bridge_id: str) -> dict | None:
        try:
            return await self.request("GET", f"/bridges/{bridge_id}")
        except AriNotFound:
            return None

    async def list_bridges(self) -> list[dict]:
        return await self.request("GET", "/bridges")

    # -- recordings ---------------------------------------------------------
    async def stop_recording(self, name: str) -> None:
        await self.request("POST", f"/recordings/live/{name}/stop")

    async def recording_is_live(self, name: str) -> bool:
        try:
            await self.request("GET", f"/recordings/live/{name}")
            return True
        except AriNotFound:
            return False

    async def stored_recordings(self) -> list[str]:
        """The names of the recordings in Asterisk's spool (finished or not)."""
        return [r["name"] for r in await self.request("GET", "/recordings/stored")]

    async def filter_events(self, allowed: Iterable[str]) -> None:
        """Have Asterisk send this application only events of these types.
        It otherwise sends every ChannelVarset, ChannelDialplan, caller-id and
        state change of every channel (three events in four), each encoded,
        sent, decoded and dispatched for nothing."""
        await self.request("PUT", f"/applications/{self.app}/eventFilter",
                           body={"allowed": [{"type": t} for t in sorted(allowed)]})

    async def stored_recording_exists(self, name: str) -> bool:
        try:
            await self.request("GET", f"/recordings/stored/{name}")
            return True
        except AriNotFound:
            return False

    async def delete_stored_recording(self, name: str) -> None:
        await self.request("DELETE", f"/recordings/stored/{name}")

    async def download_stored_recording(self, name: str, dest: Path) -> tuple[int, str, int | None]:
        """Stream a stored recording to `dest`; return (bytes, sha256, Content-Length)."""
        path = f"/recordings/stored/{name}/file"
        digest, size = hashlib.sha256(), 0
        with _counted("GET", path):
            try:
                async with self.http.get(self.base_url + path, timeout=aiohttp.ClientTimeout(total=120)) as resp:
                    if resp.status >= 400:
                        raise _error_for(resp.status, "GET", path, await resp.text())
                    with open_private(dest, "wb") as out:  # plaintext audio
                        async for chunk in resp.content.iter_chunked(64 * 1024):
                            digest.update(chunk)
                            size += len(chunk)
                            out.write(chunk)
                    return size, digest.hexdigest(), resp.content_length
            except aiohttp.ClientError as exc:
                raise AriUnreachable("GET", path, type(exc).__name__) from None

    # -- system -------------------------------------------------------------
    async def info(self) -> dict:
        return await self.request("GET", "/asterisk/info")

    async def application(self) -> dict:
        return await self.request("GET", f"/applications/{self.app}")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# What quote(safe=",:@") leaves as it is. Most values a call sends (ids, sound
# URIs, causes) are all such characters: quoting them char by char was a
# tenth of a request's Python calls.
_QUERY_PLAIN = re.compile(r"[A-Za-z0-9_.~,:@-]*")


def _query(params: dict[str, Any]) -> str:
    """`urlencode(params, quote_via=quote, safe=",:@")` without the None values."""
    return "&".join(f"{_quoted(key)}={_quoted(_query_value(value))}" for key, value in params.items()
                    if value is not None)


def _quoted(text: str) -> str:
    return text if _QUERY_PLAIN.fullmatch(text) else quote(text, safe=",:@")


def _error_for(status: int, method: str, path: str, text: str) -> AriError:
    try:
        message = json.loads(text).get("message", "")
    except (ValueError, AttributeError):
        message = text[:200]
    kind = {404: AriNotFound, 409: AriConflict}.get(status, AriError)
    return kind(status, method, path, message)
