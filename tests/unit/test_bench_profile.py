"""The benchmark's reading of a py-spy profile: which code the busy samples ran."""
from bench.profile import hotspots, library, rss_trend

STD, PKG = "/usr/lib/python3.11", "/v/lib/python3.11/site-packages"
MAIN, RUN, FLOW = "<module> (/v/bin/masking:8)", f"run ({STD}/asyncio/runners.py:118)", "/w/bridge/calls/flow.py"
RAW = "\n".join([
    f"{MAIN};{RUN};select ({STD}/selectors.py:468) 900",
    f"{MAIN};{RUN};EpollSelector.select ({STD}/selectors.py:468) 50",
    f"{MAIN};{RUN};masked_call ({FLOW}:40);fetch ({PKG}/asyncpg/pool.py:600) 30",
    f"{MAIN};masked_call ({FLOW}:41);info ({PKG}/structlog/_native.py:10);dumps ({STD}/json/__init__.py:231) 60",
    f"{MAIN};on_event (/w/bridge/ari/events.py:12) 10",
    "not a stack line",
])


def test_idle_waits_are_left_out_and_the_rest_is_shared_by_whose_code_runs():
    samples, functions, libraries = hotspots(RAW)
    assert samples == 100
    assert functions[0].function == "dumps (__init__.py)" and functions[0].self_share == 0.6
    shares = {h.function: (h.self_share, h.inclusive_share) for h in libraries}
    assert shares["json"] == (0.6, 0.6)
    assert shares["structlog"] == (0.0, 0.6)  # logging's cost is the JSON it writes
    assert shares["asyncpg"] == (0.3, 0.3)
    assert shares["bridge.ari"] == (0.1, 0.1)


def test_a_function_s_lines_count_as_one_and_libraries_are_named_by_package_or_domain():
    assert library("fetch (/v/lib/python3.11/site-packages/asyncpg/pool.py:600)") == "asyncpg"
    assert library("x (/w/bridge/calls/flow.py:1)") == "bridge.calls"
    assert library("x (/w/bridge/service.py:1)") == "bridge.service"
    assert library("y (/usr/lib/python3.11/asyncio/events.py:80)") == "asyncio"
    assert library("z (/usr/lib/python3.11/selectors.py:4)") == "selectors"
    assert library("Handle._run (asyncio/events.py:80)") == "asyncio"  # as py-spy 0.4 shortens paths
    assert library("ClientSession._request (aiohttp/client.py:9)") == "aiohttp"
    _, functions, _ = hotspots("a (/x/m.py:1) 1\na (/x/m.py:2) 1\n")
    assert [(h.function, h.self_share) for h in functions] == [("a (m.py)", 1.0)]


def test_memory_growth_is_read_after_the_warm_up_and_only_while_calls_are_placed():
    # 100 s of placing at 10 calls/s: 20 MiB of warm-up in the first 10 s, then 1 KiB a second
    # (0.1 KiB a call), then a drop once the load ends that must not count.
    samples = [(float(t), 50_000 + min(t, 10) * 2048 + max(0, t - 10)) for t in range(0, 101)]
    samples += [(101.0, 40_000), (102.0, 40_000)]
    growth, rows = rss_trend(samples, rate=10, calls=1000)
    assert abs(growth - 100.0) < 1e-6, growth  # KiB per 1000 calls
    assert rows and rows[-1].strip().startswith("102 s") and "1000 calls placed" in rows[-1]


def test_ari_traffic_is_what_grew_between_two_scrapes_per_call():
    from bench.profile import ari_traffic

    key = lambda op, outcome="ok": ("masking_ari_requests_total", (("operation", op), ("outcome", outcome)))  # noqa: E731
    before = {key("POST /channels/{id}/play"): 5.0, ("masking_ari_events_total", (("type", "StasisStart"),)): 2.0}
    after = {key("POST /channels/{id}/play"): 25.0, key("POST /channels/{id}/play", "not_found"): 2.0,
             key("POST /bridges"): 10.0,
             ("masking_ari_events_total", (("type", "StasisStart"),)): 22.0,
             ("masking_ari_events_total", (("type", "ChannelDestroyed"),)): 20.0}
    requests, events = ari_traffic(before, after, 10)
    assert requests == "ARI requests per call: 3.2 (POST /channels/{id}/play 2.2, POST /bridges 1.0)"
    assert events == "ARI events per call: 4.0 (StasisStart 2.0, ChannelDestroyed 2.0)"


PERF_REPORT = """\
# Samples: 9K of event 'cpu-clock'
#
# Overhead  Command   Shared Object
# ........  ........  .............
#
    61.53%  swapper   [kernel.kallsyms]
    14.00%  asterisk  [kernel.kallsyms]
     5.00%  asterisk  asterisk
     4.36%  sipp      [kernel.kallsyms]
     0.50%  SIP       [kernel.kallsyms]
     0.50%  asterisk  libjansson.so.4.15.1
"""


def test_a_perf_report_is_read_for_the_processes_threads_only_summed_over_their_names(tmp_path, monkeypatch):
    from bench.profile import PerfRecord
    perf = tmp_path / "perf"
    perf.write_text(f"#!/bin/sh\ncat <<'END'\n{PERF_REPORT}END\n")
    perf.chmod(0o755)
    monkeypatch.setenv("MASKING_PERF", str(perf))
    data = tmp_path / "asterisk.data"
    data.write_bytes(b"")
    record = PerfRecord([1], data)
    record.comms, record._process = {"asterisk", "SIP"}, object()  # as after a recording
    shares = record.report("dso")
    assert [name for _, name in shares] == ["[kernel.kallsyms]", "asterisk", "libjansson.so.4.15.1"]
    assert [round(share, 3) for share, _ in shares] == [0.725, 0.25, 0.025]  # of 20%: Asterisk's own samples


def test_the_machine_s_ticks_add_up_and_its_calibration_is_a_positive_cpu_time():
    from bench.profile import calibration_ms, machine_ticks
    before = machine_ticks()
    assert calibration_ms(rounds=1) > 0
    after = machine_ticks()
    assert before["busy"] + before["steal"] <= before["total"]
    assert all(after[key] >= before[key] for key in before)


def test_the_paths_table_shows_the_machine_beside_the_parts():
    from bench.paths import Step, table
    step = Step("ari", True, 150, 300, 300, 300, 150, [1200.0], [450.0],
                {"asterisk": 60.0, "service": 12.0, "postgres": 5.0}, 15.5,
                {"busy": 140.0, "steal": 1.5, "share": 0.8}, 214.0)
    header, rule, row = table([step]).splitlines()
    assert header.count("|") == rule.count("|") == row.count("|")
    assert row.endswith("| 15.5 | 140, 1.5, 80% | 214 |")
