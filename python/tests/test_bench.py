"""eshm's Python transports for eshm-bench (python -m eshm.bench --peer=...) and the front end.

Tiny runs: this checks the protocol eshm-bench relies on and what reaches its JSON, never a speed.
"""

import array
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from eshm import bench

PEER = [sys.executable, "-m", "eshm.bench"]


def _peer(tmp_path, transport, mode="stream", wait="blocking", size=64, messages=300, *extra):
    samples = tmp_path / "samples.bin"
    done = subprocess.run(
        PEER + [f"--peer={transport}", f"--mode={mode}", f"--wait={wait}", f"--size={size}", "--warmup_s=0.01",
                f"--messages={messages}", f"--samples={samples}", *extra],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    return done, samples


def _result(done):
    assert done.returncode == 0, done.stdout + done.stderr
    fields = dict(f.split("=") for f in done.stdout.strip().splitlines()[-1].split())
    return int(fields["messages"]), float(fields["seconds"])


def _leftovers():
    return [f for f in os.listdir("/dev/shm") if "eshmbench_py_" in f]


def _runnable(names):
    out = []
    for name in names:
        reason = bench.unavailable_reason(name)
        if not reason:
            out.append(name)
    return out


@pytest.mark.parametrize("transport,wait", [(t, "blocking") for t in _runnable(
    ["py_eshm", "py_pipe", "py_queue", "py_faster_fifo", "py_zmq", "py_iceoryx2"])] + [("py_eshm", "spin"),
                                                                                       ("py_queue", "spin")])
def test_a_stream_counts_exactly_the_messages_sent(tmp_path, transport, wait):
    messages, seconds = _result(_peer(tmp_path, transport, "stream", wait, 64, 500)[0])
    assert messages == 500 and seconds > 0
    assert not _leftovers()


@pytest.mark.parametrize("transport", _runnable(["py_eshm", "py_pipe", "py_zmq"]))
def test_a_pingpong_writes_one_sample_per_round_trip(tmp_path, transport):
    done, samples = _peer(tmp_path, transport, "pingpong", "spin", 128, 200)
    messages, seconds = _result(done)
    round_trips = array.array("Q")
    round_trips.frombytes(samples.read_bytes())
    assert messages == len(round_trips) == 200
    assert all(ns > 0 for ns in round_trips)
    assert seconds == pytest.approx(sum(round_trips) / 1e9, rel=1e-6)


def test_the_batch_stream_and_64k_messages(tmp_path):
    assert _result(_peer(tmp_path, "py_eshm_batch", "stream", "spin", 64, 1000)[0])[0] == 1000
    assert _result(_peer(tmp_path, "py_eshm", "stream", "blocking", 65536, 200)[0])[0] == 200


@pytest.mark.parametrize("transport", ["py_eshm_array", "py_eshm_array_view", "py_shm_pipe_array",
                                       "py_zmq_array"])
def test_arrays_arrive_in_order(tmp_path, transport):
    if bench.unavailable_reason(transport):
        pytest.skip(bench.unavailable_reason(transport))
    assert _result(_peer(tmp_path, transport, "stream", "blocking", 1 << 16, 100)[0])[0] == 100


@pytest.mark.parametrize("transport", ["py_eshm_read_async", "py_eshm_to_thread", "py_zmq_asyncio"])
def test_asyncio_clients_time_every_round_trip(tmp_path, transport):
    if bench.unavailable_reason(transport):
        pytest.skip(bench.unavailable_reason(transport))
    done, samples = _peer(tmp_path, transport, "pingpong", "blocking", 64, 100, "--eshm_wait=adaptive")
    assert _result(done)[0] == 100 and samples.stat().st_size == 800


def test_a_combination_a_transport_cannot_run_exits_3_and_says_why(tmp_path):
    done, _ = _peer(tmp_path, "py_eshm_batch", "pingpong", "spin")
    assert done.returncode == bench.UNSUPPORTED
    assert "py_eshm_batch runs only stream" in done.stderr
    done, _ = _peer(tmp_path, "py_eshm_array", "stream", "blocking", 66)
    assert done.returncode == bench.UNSUPPORTED and "multiples of 4" in done.stderr


def test_bad_arguments_are_refused(tmp_path):
    for args in (["--peer=nope", "--mode=stream", "--wait=spin", "--size=64"],
                 ["--peer=py_eshm", "--mode=stream", "--wait=spin", "--size=4"],
                 ["--peer=py_eshm", "--mode=pingpong", "--wait=spin", "--size=64"]):  # no --samples
        done = subprocess.run(PEER + args, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)


def test_a_failing_child_fails_the_run_with_its_error(tmp_path, monkeypatch):
    # ctypes with a library that is not libeshm.so: the parent's open fails before the fork.
    bogus = tmp_path / "libeshm.so"
    bogus.write_text("not a library")
    monkeypatch.setenv("ESHM_LIBESHM", str(bogus))
    done, _ = _peer(tmp_path, "py_ctypes")
    assert done.returncode != 0 and "libeshm.so" in done.stderr


def test_peer_list_names_every_transport_with_its_availability():
    done = subprocess.run(PEER + ["--peer-list"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [r[0] for r in rows] == list(bench.TRANSPORTS)
    assert all(r[1] == "ok" or r[1].startswith(r[0] + ":") for r in rows), rows
    assert dict((r[0], r[1]) for r in rows)["py_eshm"] == "ok"


def _eshm_bench():
    """The eshm-bench binary beside these tests (Bazel runfiles) or named by $ESHM_BENCH."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.environ.get("ESHM_BENCH"), os.path.join(here, "..", "..", "benchmarks", "eshm_bench",
                                                             "eshm-bench")):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    return None


def test_the_front_end_runs_eshm_bench_with_python_transports(tmp_path):
    tool = _eshm_bench()
    if tool is None:
        pytest.skip("eshm-bench is not built beside the tests (bazel test //python:bench_test has it)")
    out = tmp_path / "bench.json"
    # The tool below the working directory: the recorded command must name it relatively, and name no
    # directory of this machine for the interpreter either.
    (tmp_path / "eshm-bench").symlink_to(tool)
    done = subprocess.run(
        PEER + [f"--eshm-bench={tmp_path / 'eshm-bench'}", "--compare=py_eshm,py_pipe,py_eshm_batch",
                "--mode=stream,pingpong", "--wait=spin", "--sizes=64", "--messages=300", "--warmup_s=0",
                "--repetitions=1", "--json=bench.json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    assert doc["schema"] == "eshm-bench/2"
    command = doc["command"].split()
    assert command[0] == "eshm-bench", doc["command"]
    python = next(a.split("=", 1)[1] for a in command if a.startswith("--python="))
    assert os.path.realpath(shutil.which(python) or python) == os.path.realpath(sys.executable)
    assert str(tmp_path) not in doc["command"]
    rows = {(r["transport"], r["mode"]): r for r in doc["results"]}
    assert set(rows) == {("eshm", "stream"), ("eshm", "pingpong"), ("py_eshm", "stream"), ("py_eshm", "pingpong"),
                         ("py_pipe", "stream"), ("py_pipe", "pingpong"), ("py_eshm_batch", "stream")}
    for (transport, mode), r in rows.items():
        assert r["messages"] == 300 and r["msgs_per_s"] > 0, r
        if mode == "pingpong":
            lat = r["latency_ns"]
            assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"], r
            assert r["floor"] == "atomic_pingpong" and r["ratio_to_floor"] > 0
    assert "unavailable: py_eshm_batch runs only stream" in done.stdout, done.stdout
    assert not _leftovers()


def test_eshm_bench_gives_the_peers_the_libeshm_built_beside_it(tmp_path):
    """python/bench's runfiles hold eshm-bench and eshm/libeshm.so but no runfiles of eshm-bench's own:
    py_ctypes must still load that libeshm.so, with no $ESHM_LIBESHM to name it."""
    tool = _eshm_bench()
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "eshm", "libeshm.so")
    if tool is None or not os.path.isfile(lib):
        pytest.skip("eshm-bench and libeshm.so are not built beside the tests (bazel test //python:bench_test)")
    tree = tmp_path / "tree"
    (tree / "benchmarks" / "eshm_bench").mkdir(parents=True)
    (tree / "eshm").mkdir()
    shutil.copy(tool, tree / "benchmarks" / "eshm_bench" / "eshm-bench")  # a copy: /proc/self/exe is the tree's
    shutil.copy(lib, tree / "eshm" / "libeshm.so")
    import eshm
    env = {k: v for k, v in os.environ.items() if k != "ESHM_LIBESHM"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(eshm.__file__)),
                                                      env.get("PYTHONPATH")]))
    done = subprocess.run(
        [str(tree / "benchmarks" / "eshm_bench" / "eshm-bench"), f"--python={sys.executable}", "--compare=py_ctypes",
         "--mode=stream", "--wait=spin", "--sizes=64", "--messages=300", "--warmup_s=0", "--repetitions=1",
         "--json=bench.json"], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {(r["transport"], r["mode"]) for r in json.loads((tmp_path / "bench.json").read_text())["results"]}
    assert ("py_ctypes", "stream") in rows, done.stdout
    assert not _leftovers()


def _files_of(pid, tmp_path):
    """What a run of eshm-bench with process id `pid` could leave: its names in /dev/shm (eshm segments, samples),
    and any file in `tmp_path`, the run's $TMPDIR (a zmq peer's socket file)."""
    return sorted(f for f in os.listdir("/dev/shm") if f"eshmbench_{pid}_" in f or "eshmbench_py_" in f) + \
        sorted(os.listdir(tmp_path))


@pytest.mark.parametrize("stop", ["timeout", "SIGINT"])
def test_a_peer_stopped_mid_run_leaves_no_file(tmp_path, stop):
    """A Python peer run stopped by --timeout_s, or eshm-bench stopped by SIGINT while a peer runs: the peer's
    eshm segment and its zmq socket file are removed, whatever the peer was doing."""
    tool = _eshm_bench()
    if tool is None:
        pytest.skip("eshm-bench is not built beside the tests (bazel test //python:bench_test has it)")
    transports = _runnable(["py_eshm", "py_zmq"])
    work = tmp_path / "tmp"
    work.mkdir()
    # 30 s runs stopped after 3 s: the eshm run by the watchdog, then each peer's run.
    proc = subprocess.Popen(
        PEER + [f"--eshm-bench={tool}", f"--compare={','.join(transports)}", "--mode=pingpong", "--wait=blocking",
                "--sizes=64", "--duration_s=30", "--floor_duration_s=0.01", "--warmup_s=0", "--repetitions=1",
                "--timeout_s=3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(work)})
    try:
        if stop == "SIGINT":  # once the first peer's segment is there (the eshm run's ends in _0)
            for _ in range(300):
                if any(f.startswith("eshm_") and not f.endswith("_0") for f in _files_of(proc.pid, work)):
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the peer's run never started")
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (130 if stop == "SIGINT" else 1), out
    if stop == "timeout":
        for transport in transports:
            assert f"FAILED: {transport} pingpong blocking 64 B" in out and "did not finish within 3 s" in out, out
    assert _files_of(proc.pid, work) == [], out


def test_the_front_end_says_how_to_get_eshm_bench(tmp_path):
    missing = tmp_path / "eshm-bench"
    done = subprocess.run(PEER + [f"--eshm-bench={missing}", "--quick"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"found no program at {missing}" in done.stderr
    assert "bazel build --config=bench //benchmarks:eshm-bench" in done.stderr


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
