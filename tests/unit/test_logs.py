"""The log pipeline masks every number, however deeply it is nested."""
import io
import json

import pytest
import structlog

from bridge.logs import configure, get_logger, redact


@pytest.fixture
def log_stream():
    stream = io.StringIO()
    configure("info", stream=stream)
    yield stream
    structlog.reset_defaults()


def test_redact_masks_numbers_in_nested_dicts_and_lists():
    event = {"event": "x", "detail": {"parties": ["+6591234567", {"b": "call 6581234567"}]}}
    out = redact(None, "info", event)
    assert out == {"event": "x", "detail": {"parties": ["+65****4567", {"b": "call 65****4567"}]}}


def test_redact_keeps_tuples_as_tuples_and_leaves_non_strings_alone():
    out = redact(None, "info", {"pair": ("+6591234567", 42), "n": 6591234567.5, "flag": None})
    assert out == {"pair": ("+65****4567", 42), "n": 6591234567.5, "flag": None}


def test_logged_event_is_json_with_no_number_in_clear(log_stream):
    get_logger("t").info("call.started +6591234567", caller="+6591234567",
                         legs=[{"callee": "6581234567"}])
    line = json.loads(log_stream.getvalue())
    assert line["event"] == "call.started +65****4567"
    assert line["level"] == "info"
    assert "6591234567" not in log_stream.getvalue()
    assert "6581234567" not in log_stream.getvalue()


def test_exception_text_is_masked_too(log_stream):
    try:
        raise ValueError("no route to +6591234567")
    except ValueError:
        get_logger("t").exception("call.crashed")
    assert "6591234567" not in log_stream.getvalue()
    assert "+65****4567" in json.loads(log_stream.getvalue())["exception"]


def test_events_below_the_configured_level_are_dropped(log_stream):
    get_logger("t").debug("noise")
    assert log_stream.getvalue() == ""


def test_a_value_json_cannot_encode_is_still_masked(log_stream):
    get_logger("t").info("x", numbers={"+6591234567"})
    assert "6591234567" not in log_stream.getvalue()
