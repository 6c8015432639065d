"""FastAGI fallback: masked calls when the Stasis application is not registered.

The dialplan (dialplan/extensions.conf) calls `agi://.../route` when Stasis()
fails. The route is decided by the same code as the ARI path
(`bridge.calls.flow.resolve`), a shared number's PIN is asked for and checked
by the same dialogue (`bridge.calls.pin.ask_for_pin`, over AGI commands), and
the call is written to `calls` with `path = 'agi'`. A recorded call's notice
is played by the bridge to each party with the same opt-out as on the ARI path
(`bridge.agi.notice`). The dialplan then dials
with the virtual number as caller ID and, once both heard the notice out,
records with MixMonitor into Asterisk's recordings directory; `h` calls
`agi://.../finish`, which completes the row and moves the recording into the
store over ARI's REST interface, as for any call.
"""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta

from bridge import metrics, recordings
from bridge.agi.gate import MAX_REQUEST_BYTES, Gate
from bridge.agi.notice import agi_notice, channel_gone, counterpart_notice
from bridge.agi.pin import agi_collect
from bridge.ari import AriClient, AriError
from bridge.calls import ids
from bridge.calls.arrival import arrival
from bridge.calls.decisions import call_time_limit, ending_for_dial, ending_for_rejection
from bridge.calls.flow import resolve
from bridge.calls.pin import ask_for_pin
from bridge.calls.record import CallRow
from bridge.calls.spool import Spool
from bridge.clock import utcnow
from bridge.config import Settings
from bridge.logs import get_logger
from bridge.numbering import mask_number, to_e164
from bridge.sessions.resolve import AskPin, Connect, Reject
from bridge.stack.trunks import outbound_presentation
from bridge.store import Store
from bridge.store.errors import NotFound, StoreUnavailable

log = get_logger("bridge.agi")
DIAL_OUTCOMES = ("BUSY", "NOANSWER", "CHANUNAVAIL", "CONGESTION")
DISPOSITIONS = {"ANSWER": "answered", "BUSY": "busy", "NOANSWER": "no_answer", "CANCEL": "cancelled"}


class FallbackAgi:
    def __init__(self, store: Store, ari: AriClient, settings: Settings, node: str, spool: Spool | None):
        self.store, self.ari, self.settings, self.node, self.spool = store, ari, settings, node, spool
        self.gate = Gate({"route": self.route, "notice": self.notice, "finish": self.finish}, settings.agi_secret,
                         settings.agi_allowed_sources)
        self._server: asyncio.AbstractServer | None = None
        # Calls routed to a Dial and not finished yet (their `h` extension comes back
        # with `finish`): a draining service keeps listening for them.
        self.pending: set[uuid.UUID] = set()
        self.presentation = outbound_presentation(settings)  # the outbound trunk's privacy, for Dial

    async def start(self) -> None:
        """Listen; a port already taken (another instance on this host) is
        logged, not fatal: the fallback is a second line, not the first."""
        try:
            self._server = await asyncio.start_server(self.gate.handler, self.settings.agi_host,
                                                      self.settings.agi_port, limit=MAX_REQUEST_BYTES)
        except OSError as exc:
            log.error("agi.unavailable", port=self.settings.agi_port, error=exc.strerror)
            return
        log.info("agi.listening", port=self.settings.agi_port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def route(self, request) -> None:
        headers = request.headers
        arrived = arrival((headers.get("agi_extension", ""), headers.get("agi_arg_1", ""),
                           headers.get("agi_arg_2", "")), headers.get("agi_channel", ""), self.settings)
        caller_number = to_e164(headers.get("agi_callerid", ""), self.settings.default_region)
        call_id = uuid.uuid4()
        clog = log.bind(call_id=str(call_id), virtual_number=arrived.row_number, trunk=arrived.trunk, path="agi")
        route = await resolve(self.store, self.settings, arrived.virtual_number, caller_number, clog)
        row = CallRow(self.store, call_id, clog, spool=self.spool)
        row.insert(virtual_number=arrived.row_number, caller_channel_id=headers.get("agi_uniqueid", ""),
                   started_at=utcnow(), asterisk_node=self.node, path="agi",
                   session_id=route.session.id if route.session else None,
                   direction=route.direction if isinstance(route, Connect) else None)
        try:
            await request.send_command(f'SET VARIABLE MASKING_CALL_ID "{call_id}"')
            if isinstance(route, AskPin):  # a shared number: the caller's PIN names the session
                await request.send_command("EXEC Progress")
                route = await ask_for_pin(agi_collect(request, self.settings), self.store, self.settings,
                                          arrived.virtual_number, caller_number, row, clog)
                if route is None:
                    row.update(disposition="cancelled", hangup_by="caller")
                    return
            record = False
            if isinstance(route, Connect) and route.session.record:
                record = await self._caller_notice(request, route, row, clog)
                if record is None:
                    return  # the caller hung up during the notice
            # Asterisk first: the caller must not wait on the database.
            for name, value in self._variables(route, call_id, row, clog, record).items():
                await request.send_command(f'SET VARIABLE {name} "{value}"')
            self.pending.add(call_id)
        finally:
            await row.close()

    async def _caller_notice(self, request, route: Connect, row: CallRow, clog) -> bool | None:
        """The caller hears the notice in early media (bridge/agi/notice.py):
        whether the call may be recorded so far, None if the caller left."""
        await request.send_command("EXEC Progress")
        heard = await agi_notice(request, self.settings.notice, "caller")
        row.update(notices=json.dumps([heard.to_json()]))
        if heard.opted_out:
            row.update(recording_opt_out="caller")
            clog.info("recording.opted_out", party="caller")
        elif not heard.completed and await channel_gone(request):
            row.update(disposition="cancelled", hangup_by="caller", ended_at=utcnow())
            clog.info("call.cancelled", during="notice")
            return None
        return heard.completed

    def _variables(self, route: Connect | Reject, call_id: uuid.UUID, row: CallRow, clog,
                   record: bool = False) -> dict[str, str]:
        """What the dialplan needs to connect the call, or to release it with a prompt."""
        if isinstance(route, Reject):
            ending = ending_for_rejection(route.reason, self.settings.prompts)
            row.update(disposition="rejected", reject_reason=route.reason.value, hangup_by="system",
                       caller_hangup_cause=ending.cause)
            metrics.agi_calls_total.labels(route.reason.value).inc()
            clog.info("call.rejected", reason=route.reason.value)
            return {"MASKING_PROMPT": ending.prompt, "MASKING_CAUSE": str(ending.cause)}
        session = route.session
        variables = {"MASKING_DIAL": f"PJSIP/{route.counterpart}@{self.settings.outbound_endpoint}",
                     "MASKING_CLI": route.caller_id, "MASKING_RECORD": "1" if record else "0",
                     "MASKING_PRES": self.presentation}
        # The session's time limit, or MASKING_MAX_CALL_SECONDS: Dial's S()
        # hangs both up that long after the answer, as the ARI path does.
        limit = call_time_limit(session.time_limit_seconds, self.settings.max_call_seconds)
        variables["MASKING_LIMIT"] = str(limit or "")
        variables["MASKING_DIAL_LIMIT"] = f"S({limit})" if limit else ""
        for status in DIAL_OUTCOMES:
            ending = ending_for_dial(status, None, self.settings.prompts)
            variables[f"MASKING_PROMPT_{status}"] = ending.prompt
            variables[f"MASKING_CAUSE_{status}"] = str(ending.cause)
        row.update(recorded=record)  # so far: the counterpart's notice decides the rest
        metrics.agi_calls_total.labels("connect").inc()
        clog.info("call.resolved", outcome="connect", counterpart=mask_number(route.counterpart))
        return variables

    async def notice(self, request) -> None:
        await counterpart_notice(self.store, self.settings, self.spool, request)

    async def finish(self, request) -> None:
        values = {}
        for name in ("MASKING_CALL_ID", "DIALSTATUS", "ANSWEREDTIME", "HANGUPCAUSE", "MASKING_LIMIT",
                     "MASKING_RECORDED"):
            result = await request.send_command(f"GET VARIABLE {name}")
            values[name] = result.get("result", ("", ""))[1] if result.get("result", ("0",))[0] == "1" else ""
        try:
            call_id = uuid.UUID(values["MASKING_CALL_ID"])
        except ValueError:
            return
        self.pending.discard(call_id)
        clog = log.bind(call_id=str(call_id), path="agi")
        stored = await self._stored(call_id)
        if stored is not None and not (stored["path"] == "agi"
                                       and stored["caller_channel_id"] == request.headers.get("agi_uniqueid", "")):
            clog.warning("agi.refused", reason="not_this_channels_call")
            return
        row = CallRow(self.store, call_id, clog, spool=self.spool)
        ended = utcnow()
        status = values["DIALSTATUS"]
        fields = {"ended_at": ended, "dial_status": status or None,
                  "caller_hangup_cause": int(values["HANGUPCAUSE"]) if values["HANGUPCAUSE"].isdigit() else None}
        if status:  # it was dialed (a rejected call's row is complete already)
            # hangup_by too, unknown here: the sweep may have closed the row as
            # `interrupted` by the system while this write waited in a spool.
            fields.update(disposition=DISPOSITIONS.get(status, "failed"), hangup_by=None)
            if status == "ANSWER" and values["ANSWEREDTIME"].isdigit():
                talk = int(values["ANSWEREDTIME"])
                fields.update(answered_at=ended - timedelta(seconds=talk), talk_seconds=talk)
                if values["MASKING_LIMIT"].isdigit() and talk >= int(values["MASKING_LIMIT"]):
                    fields.update(disposition="time_limit", hangup_by="system")
        row.update(**fields)
        clog.info("call.ended", disposition=fields.get("disposition"))
        if status == "ANSWER" and recorded(stored, values["MASKING_RECORDED"]):
            await self._store_recording(call_id, row, clog)
        await row.close()

    async def _stored(self, call_id: uuid.UUID) -> dict | None:
        """The row `route` wrote (and the counterpart's notice completed), to
        check that `finish` completes only the fallback call of this channel.
        None when it cannot be read (the database is down, or its insert waits
        in the spool): that call is finished as named, and the channel says
        whether it was recorded (`recorded`)."""
        try:
            return await self.store.calls.get(call_id)
        except (NotFound, StoreUnavailable):
            return None

    async def _store_recording(self, call_id: uuid.UUID, row: CallRow, clog) -> None:
        fmt = self.settings.recording_format
        dest = recordings.storage_path(self.settings.recording_dir, call_id, utcnow(), fmt)
        # MixMonitor closes its file after the channel is gone, so `h` may run first.
        try:
            stored = await recordings.when_complete(lambda: recordings.collect(
                self.ari, ids.recording(call_id), dest, fmt, self.store.keys, row.keep_recording,
                shared=self.settings.shared_recording_spool))
        except recordings.NotKept:
            clog.error("recording.not_kept")  # Asterisk's copy stays for the sweep
            return
        except (AriError, recordings.RecordingInvalid, OSError) as exc:
            clog.error("recording.lost", error=str(exc))
            return
        clog.info("recording.stored", bytes=stored.bytes, seconds=round(stored.duration_seconds, 1))


def recorded(stored: dict | None, channel_says: str) -> bool:
    """Whether a finished fallback call has a recording to collect: its row
    says so; or, when the row cannot be read, the caller's channel does
    (MASKING_RECORDED, set by the dialplan only once MixMonitor started after
    both notices, extensions.conf), so an outage at hang-up loses no recording."""
    if stored is not None:
        return bool(stored["recorded"])
    return channel_says == "1"
