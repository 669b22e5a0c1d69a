"""python -m eshm.bench runs end to end and writes its JSON in the eshm-bench/2 schema.

Tiny durations: this checks the tool, never a speed (no timing thresholds).
"""

import json
import os
import stat
import subprocess
import sys

import pytest

LATENCY_KEYS = ["min", "p50", "p90", "p99", "p99.9", "p99.99", "max"]
TRANSPORTS = {"eshm", "eshm_batch", "multiprocessing.Pipe", "multiprocessing.Queue", "faster-fifo", "pyzmq",
              "iceoryx2", "eshm_array", "eshm_array_view", "shared_memory+Pipe", "pyzmq_nocopy"}


def _run(tmp_path, *args):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "eshm.bench", "--repetitions", "1", "--duration", "0.02", "--warmup", "0.01",
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text()), done.stdout


def _check_schema(doc):
    assert doc["schema"] == "eshm-bench/2"
    assert doc["tool"] == "eshm.bench"
    assert isinstance(doc["command"], str) and "eshm.bench" in doc["command"]
    m = doc["machine"]
    assert set(m) == {"cpu_model", "logical_cpus", "kernel", "clocksource", "hostname"}
    assert isinstance(m["logical_cpus"], int) and m["logical_cpus"] >= 1
    assert all(isinstance(m[k], str) for k in ("cpu_model", "kernel", "clocksource", "hostname"))
    s = doc["setup"]
    assert set(s) == {"ends", "pinned", "cpus", "warmup_s", "repetitions"}
    assert s["ends"] == "processes" and isinstance(s["pinned"], bool) and s["repetitions"] == 1
    assert s["cpus"] is None or (len(s["cpus"]) == 2 and all(isinstance(c, int) for c in s["cpus"]))
    assert isinstance(s["warmup_s"], float)
    assert isinstance(doc["floors"], list)
    assert doc["results"]
    for r in doc["results"]:
        assert set(r) == {"transport", "mode", "wait", "size", "messages", "seconds", "msgs_per_s", "gb_per_s",
                          "latency_ns", "latency_kind", "floor", "ratio_to_floor", "baseline",
                          "ratio_to_baseline", "futex_calls_per_message"}
        assert r["transport"] in TRANSPORTS
        assert r["mode"] in ("pingpong", "stream") and r["wait"] in ("spin", "blocking")
        assert isinstance(r["size"], int) and isinstance(r["messages"], int) and r["messages"] > 0
        assert r["seconds"] > 0 and r["msgs_per_s"] > 0 and r["gb_per_s"] > 0
        assert r["floor"] is None and r["ratio_to_floor"] is None and r["baseline"] is None
        if r["mode"] == "pingpong":
            assert r["latency_kind"] == "round_trip"
            lat = r["latency_ns"]
            assert set(lat) == set(LATENCY_KEYS) | {"mean"}
            values = [lat[k] for k in LATENCY_KEYS]
            assert values == sorted(values), lat  # percentiles never decrease
            assert lat["min"] <= lat["mean"] <= lat["max"]
        else:
            assert r["latency_ns"] is None and r["latency_kind"] is None


def test_bench_writes_its_json_in_the_shared_schema(tmp_path):
    doc, stdout = _run(tmp_path, "--transports", "eshm,eshm_batch,multiprocessing.Pipe", "--no-64k")
    _check_schema(doc)
    got = {(r["transport"], r["mode"], r["wait"]) for r in doc["results"]}
    assert got == {("eshm", "stream", "blocking"), ("multiprocessing.Pipe", "stream", "blocking"),
                   ("eshm_batch", "stream", "blocking"), ("eshm", "pingpong", "spin"),
                   ("eshm", "pingpong", "blocking"), ("multiprocessing.Pipe", "pingpong", "spin"),
                   ("multiprocessing.Pipe", "pingpong", "blocking")}
    assert "vs Pipe" in stdout and "Targets:" in stdout
    assert "64 KiB one-way" in stdout  # listed, as not measured


def test_bench_every_transport_and_the_cpp_comparison(tmp_path):
    # A stand-in for the C++ eshm-bench, honouring its command-line contract.
    fake = tmp_path / "eshm-bench"
    fake.write_text(
        "#!/bin/sh\n"
        "if [ \"$*\" = '--mode=stream --sizes=65536 --wait=spin --duration_s=2 --json=-' ]; then\n"
        "  echo '{\"schema\": \"eshm-bench/2\",'\n"
        "  echo ' \"results\": [{\"gb_per_s\": 1.5}]}'\n"
        "  echo 'results (its table follows the JSON): {...}'\n"
        "elif [ \"$*\" = '--mode=pingpong --sizes=64 --wait=spin --duration_s=2 --json=-' ]; then\n"
        "  echo 'a table first'\n"
        "  echo '{\"results\": [{\"latency_ns\": {\"p50\": 800, \"p99\": 900}}]}'\n"
        "else exit 3; fi\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    doc, stdout = _run(tmp_path, "--cpp-bench", str(fake))
    _check_schema(doc)
    transports = {r["transport"] for r in doc["results"]}
    for name, module in (("faster-fifo", "faster_fifo"), ("pyzmq", "zmq"), ("iceoryx2", "iceoryx2")):
        try:
            __import__(module)
        except ImportError:
            assert name not in transports and f"{name} skipped" in stdout
        else:
            assert name in transports
    assert any(r["size"] == 65536 and r["transport"] == "eshm" for r in doc["results"])
    assert doc["floors"] == [
        {"name": "eshm_cpp_stream", "size": 65536, "latency_ns": None, "gb_per_s": 1.5},
        {"name": "eshm_cpp_pingpong", "size": 64, "latency_ns": {"p50": 800.0, "p99": 900.0}, "gb_per_s": None},
    ]
    assert "1.50 GB/s" in stdout and "0.80 us" in stdout


def test_bench_iceoryx2_in_every_mode(tmp_path):
    pytest.importorskip("iceoryx2")
    doc, stdout = _run(tmp_path, "--transports", "eshm,iceoryx2")
    _check_schema(doc)
    got = {(r["transport"], r["mode"], r["wait"], r["size"]) for r in doc["results"]}
    assert {("iceoryx2", "stream", "blocking", 64), ("iceoryx2", "pingpong", "spin", 64),
            ("iceoryx2", "pingpong", "blocking", 64), ("iceoryx2", "stream", "blocking", 65536)} <= got
    assert "iceoryx2 skipped" not in stdout


def test_bench_reports_a_missing_cpp_tool_as_not_measured(tmp_path):
    doc, stdout = _run(tmp_path, "--transports", "eshm", "--cpp-bench", str(tmp_path / "missing"))
    _check_schema(doc)
    assert doc["floors"] == []
    assert "not measured" in stdout


def test_bench_arrays_compares_numpy_transports(tmp_path):
    pytest.importorskip("numpy")
    doc, stdout = _run(tmp_path, "--arrays", "--array-bytes", "65536")
    _check_schema(doc)
    got = {r["transport"] for r in doc["results"]}
    expected = {"eshm_array", "eshm_array_view", "shared_memory+Pipe"}
    try:
        import zmq  # noqa: F401
    except ImportError:
        assert "pyzmq_nocopy skipped" in stdout
    else:
        expected.add("pyzmq_nocopy")
    assert got == expected
    assert all(r["size"] == 65536 and r["mode"] == "stream" for r in doc["results"])
    assert "vs shared_memory+Pipe" in stdout and "64 KiB float32" not in stdout


def test_bench_idle_reports_cpu_and_open_close_times_per_count(tmp_path):
    done = subprocess.run([sys.executable, "-m", "eshm.bench", "--idle", "1,3", "--idle-seconds", "0.2"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1", "3"], done.stdout
    for r in rows:
        cpu, opened, closed = (float(x) for x in r[1:])
        assert cpu >= 0 and opened >= 0 and closed >= 0
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("eshm_eshm_bench_idle_")], "segments left behind"


def test_the_old_benchmark_pair_runs_and_prints_the_old_progress_line(tmp_path):
    """python/benchmarks/benchmark_master.py and benchmark_slave.py: the old command lines and output."""
    import re
    import uuid

    here = os.path.dirname(os.path.abspath(__file__))
    bench_dir = os.path.join(here, "..", "benchmarks")
    if not os.path.isfile(os.path.join(bench_dir, "benchmark_slave.py")):
        pytest.skip("python/benchmarks is not beside the tests")
    name = f"pair_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    slave = subprocess.Popen([sys.executable, os.path.join(bench_dir, "benchmark_slave.py"), name, "100",
                              "--count", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
    try:
        master = subprocess.run([sys.executable, os.path.join(bench_dir, "benchmark_master.py"), name, "100",
                                 "--count", "300"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        out, err = slave.communicate(timeout=120)
    finally:
        if slave.poll() is None:
            slave.kill()
            slave.wait()
    assert master.returncode == 0, master.stderr
    assert slave.returncode == 0, err
    line = re.compile(r"^\[\s*\d+\] Total:\s+[\d.]+s,\s+[\d.]+ msg/s \| Interval:\s+[\d.]+ msg/s$", re.M)
    for text in (master.stdout, out):
        assert len(line.findall(text)) == 3, text
        assert "Average:" in text and " 300 " in text, text


def test_bench_asyncio_compares_read_async_with_to_thread_and_zmq(tmp_path):
    doc, stdout = _run(tmp_path, "--asyncio")
    clients = [r["transport"] for r in doc["results"]]
    expected = ["eshm read_async", "eshm to_thread(read)", "eshm read_async, echo sleeps",
                "eshm to_thread(read), echo sleeps", "eshm read_async, both sleep", "eshm to_thread(read), both sleep"]
    try:
        import zmq  # noqa: F401
    except ImportError:
        assert "zmq.asyncio skipped" in stdout
    else:
        expected.append("zmq.asyncio ipc")
    assert clients == expected
    for r in doc["results"]:
        assert r["mode"] == "asyncio_pingpong" and r["latency_kind"] == "round_trip" and r["messages"] > 0
        assert 0 < r["latency_ns"]["p50"] <= r["latency_ns"]["p99"], r
        assert len(r["repetitions"]) == 1
    # Each read_async row is compared with the to_thread row of the same waits, in the same repetition.
    assert stdout.count("lower (") == 3, stdout
    assert not [f for f in os.listdir("/dev/shm") if f.startswith("eshm_eshm_bench_aio_")], "segments left behind"
