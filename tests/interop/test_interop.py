"""C++ <-> Python interop: real processes, started the way users start them.

- the C++ demo (eshm_demo, $ESHM_DEMO) with the Python examples (python/examples), both pairings;
- binary payloads of every size class, both directions, between the C ABI (libeshm.so, $ESHM_LIBESHM,
  through ctypes) and the Cython binding, checked with SHA-256;
- AUTO roles across languages;
- reconnection across languages: a Python master takes over from a killed C++ master;
- the classic tests/interop/test_interop.sh.

Every wait has a generous timeout; no test asserts timing. Teardown kills every process and removes
/dev/shm/eshm_<name>.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, PEER, WAIT_S

COUNT = 5


def test_cpp_master_python_slave(shm_name, procs, eshm_demo):
    master = procs.start("cpp_master", [eshm_demo, "master", shm_name, f"--count={COUNT}", "--rate_hz=20"])
    master.wait_for(r"^\[MASTER\] Initialized with role: MASTER$")
    slave = procs.python("py_slave", EXAMPLES / "simple_slave.py", shm_name, "--count", str(COUNT))
    assert slave.wait_exit() == 0, slave.output()
    assert master.wait_exit() == 0, master.output()

    out = slave.lines()
    assert out[0] == "=== ESHM Python Slave Example ==="
    assert "Initialized as SLAVE" in out
    for i in range(COUNT):
        assert f"[SLAVE] Received (20 bytes): Hello from master #{i}" in out
        assert f"[SLAVE] Sent: ACK from Python slave #{i}" in out
    out = master.lines()
    for i in range(COUNT):
        assert f"[MASTER] Sent: Hello from master #{i}" in out
        assert f"[MASTER] Received: ACK from Python slave #{i}" in out
    assert f"[MASTER] Exiting: sent {COUNT}, received {COUNT}" in out


def test_python_master_cpp_slave(shm_name, procs, eshm_demo):
    master = procs.python("py_master", EXAMPLES / "simple_master.py", shm_name, "--count", str(COUNT),
                          "--rate-hz", "20")
    master.wait_for(r"^Initialized as MASTER$")
    slave = procs.start("cpp_slave", [eshm_demo, "slave", shm_name, f"--count={COUNT}"])
    assert slave.wait_exit() == 0, slave.output()
    assert master.wait_exit() == 0, master.output()

    out = master.lines()
    assert out[0] == "=== ESHM Python Master Example ==="
    for i in range(COUNT):
        assert f"[MASTER] Sent: Hello from Python master #{i}" in out
        assert f"[MASTER] Received: ACK from slave #{i}" in out
    out = slave.lines()
    assert "[SLAVE] Initialized with role: SLAVE" in out
    for i in range(COUNT):
        assert f"[SLAVE] Received (27 bytes): Hello from Python master #{i}" in out
        assert f"[SLAVE] Sent: ACK from slave #{i}" in out


def test_cpp_master_nul_terminated_python_slave(shm_name, procs, eshm_demo):
    """An old-style peer sends a trailing NUL: the byte count includes it, the text does not show it."""
    master = procs.start("cpp_master", [eshm_demo, "master", shm_name, "--count=2", "--rate_hz=20",
                                        "--nul_terminate"])
    master.wait_for(r"Initialized with role: MASTER")
    slave = procs.python("py_slave", EXAMPLES / "simple_slave.py", shm_name, "--count", "2")
    assert slave.wait_exit() == 0, slave.output()
    assert master.wait_exit() == 0, master.output()
    assert "[SLAVE] Received (21 bytes): Hello from master #0" in slave.lines()


@pytest.mark.parametrize("master_binding,slave_binding", [("ctypes", "cython"), ("cython", "ctypes")])
def test_binary_payloads(shm_name, procs, libeshm, master_binding, slave_binding):
    """Every size class, 0 bytes to the maximum, both ways (master->slave, then echoed back), SHA-256 checked."""
    master = procs.python(f"{master_binding}_master", PEER, "payloads", shm_name, "--binding", master_binding,
                          "--role", "master", "--lib", libeshm)
    master.wait_for(r"^READY ")
    slave = procs.python(f"{slave_binding}_slave", PEER, "payloads", shm_name, "--binding", slave_binding,
                         "--role", "slave", "--lib", libeshm)
    assert slave.wait_exit(timeout=3 * WAIT_S) == 0, slave.output()
    assert master.wait_exit(timeout=3 * WAIT_S) == 0, master.output()

    def records(proc, tag):
        return [tuple(line.split()[1:]) for line in proc.lines() if line.startswith(tag + " ")]

    sent, echoed, received = records(master, "SENT"), records(master, "ECHO"), records(slave, "RECV")
    sizes = [int(size) for _, size, _ in sent]
    max_size = int(master.lines()[0].split("max=")[1])
    for size in (0, 1, 15, 16, 255, 4096, 65536, max_size):
        assert size in sizes, f"size {size} not sent: {sizes}"
    assert max_size >= 65536
    assert sent == received, "what the slave received differs from what the master sent"
    assert sent == echoed, "what the master got back differs from what it sent"
    assert "TOO_LARGE_REFUSED" in master.lines()
    assert master.lines()[-1] == f"DONE {len(sent)}"
    assert slave.lines()[-1] == f"DONE {len(sent)}"


@pytest.mark.parametrize("cpp_first", [True, False])
def test_auto_roles_across_languages(shm_name, procs, eshm_demo, cpp_first):
    """eshm_demo auto and a Python AUTO endpoint started together: one becomes master, the other slave."""
    cpp_cmd = [eshm_demo, "auto", shm_name, f"--count={COUNT}", "--rate_hz=20"]
    py_args = (PEER, "auto", shm_name, "--count", str(COUNT))
    if cpp_first:
        cpp = procs.start("cpp_auto", cpp_cmd)
        py = procs.python("py_auto", *py_args)
    else:
        py = procs.python("py_auto", *py_args)
        cpp = procs.start("cpp_auto", cpp_cmd)
    cpp_role = cpp.wait_for(r"Initialized with role: (MASTER|SLAVE)")[0].group(1)
    py_role = py.wait_for(r"^ROLE (MASTER|SLAVE)$")[0].group(1)
    assert {cpp_role, py_role} == {"MASTER", "SLAVE"}, (cpp_role, py_role)
    assert py.wait_exit() == 0, py.output()
    assert cpp.wait_exit() == 0, cpp.output()
    assert py.lines()[-1] == "DONE"
    if cpp_role == "MASTER":
        assert f"[MASTER] Received: ACK from Python slave #{COUNT - 1}" in cpp.lines()
        assert f"[SLAVE] Received (20 bytes): Hello from master #{COUNT - 1}" in py.lines()
    else:
        assert f"[SLAVE] Received (27 bytes): Hello from Python master #{COUNT - 1}" in cpp.lines()
        assert f"[MASTER] Received: ACK from slave #{COUNT - 1}" in py.lines()


def _kill_cpp_master_python_takes_over(shm_name, procs, eshm_demo, slave):
    """Runs C++ master + `slave`, kills the master with SIGKILL, starts a Python master on the same name."""
    cpp_master = procs.start("cpp_master", [eshm_demo, "master", shm_name, "--rate_hz=20"])
    cpp_master.wait_for(r"Initialized with role: MASTER")
    slave.wait_for(r"Received \(20 bytes\): Hello from master #\d+", count=3)
    cpp_master.kill()  # SIGKILL: no cleanup, the segment stays with a dead master
    assert cpp_master.popen.returncode == -signal.SIGKILL
    py_master = procs.python("py_master", EXAMPLES / "simple_master.py", shm_name, "--rate-hz", "20")
    py_master.wait_for(r"^Initialized as MASTER$")
    return py_master


def test_reconnect_cpp_slave_to_python_master(shm_name, procs, eshm_demo):
    slave = procs.start("cpp_slave", [eshm_demo, "slave", shm_name, "--max_reconnect_attempts=0"])
    py_master = _kill_cpp_master_python_takes_over(shm_name, procs, eshm_demo, slave)
    # The slave resumes by itself: new messages from the new master, and its replies reach that master.
    slave.wait_for(r"^\[SLAVE\] Received \(27 bytes\): Hello from Python master #\d+$", count=3)
    py_master.wait_for(r"^\[MASTER\] Received: ACK from slave #\d+$", count=3)
    assert slave.popen.poll() is None, slave.output()
    assert py_master.stop() == 0, py_master.output()
    assert slave.stop() == 0, slave.output()


def test_reconnect_python_slave_to_python_master(shm_name, procs, eshm_demo):
    slave = procs.python("py_slave", EXAMPLES / "simple_slave.py", shm_name)
    py_master = _kill_cpp_master_python_takes_over(shm_name, procs, eshm_demo, slave)
    slave.wait_for(r"^\[SLAVE\] Received \(27 bytes\): Hello from Python master #\d+$", count=3)
    py_master.wait_for(r"^\[MASTER\] Received: ACK from Python slave #\d+$", count=3)
    assert slave.popen.poll() is None, slave.output()
    assert py_master.stop() == 0, py_master.output()
    assert slave.stop() == 0, slave.output()
    assert slave.lines()[-1].startswith("[SLAVE] Exiting: received ")


def test_reconnect_demo_slave_survives_cpp_master(shm_name, procs, eshm_demo):
    """python/examples/reconnect_demo.py slave outlives a killed C++ master and resumes with a Python one."""
    slave = procs.python("reconnect_slave", EXAMPLES / "reconnect_demo.py", "slave", shm_name)
    cpp_master = procs.start("cpp_master", [eshm_demo, "master", shm_name, "--rate_hz=20"])
    slave.wait_for(r"Received \(20 bytes\): Hello from master #\d+", count=3)
    cpp_master.kill()
    py_master = procs.python("reconnect_master", EXAMPLES / "reconnect_demo.py", "master", shm_name,
                             "--rate-hz", "20")
    slave.wait_for(r"^\[SLAVE\] Received \(\d+ bytes\): Message #\d+ from master pid \d+$", count=3)
    slave.wait_for(r"^\[SLAVE\] Reconnected")
    assert py_master.stop() == 0, py_master.output()
    assert slave.stop() == 0, slave.output()


@pytest.mark.parametrize("script,master_args,slave_args", [
    ("performance_test.py", ("500", "--count", "2000"), ("500", "--count", "2000")),
    ("advanced_example.py", ("--count", "5", "--interval", "0.01"), ("--count", "5")),
])
def test_python_examples_pairs(shm_name, procs, script, master_args, slave_args):
    """The other examples run to completion as master + slave pairs (Python on both sides)."""
    master = procs.python("master", EXAMPLES / script, "master", shm_name, *master_args)
    slave = procs.python("slave", EXAMPLES / script, "slave", shm_name, *slave_args)
    assert master.wait_exit(timeout=3 * WAIT_S) == 0, master.output()
    assert slave.wait_exit(timeout=3 * WAIT_S) == 0, slave.output()
    if script == "performance_test.py":
        assert "[SLAVE] Total: 2000 messages" in slave.output()
        assert "sequence gaps 0" in slave.output()
        assert "[MASTER] Total: 2000 messages" in master.output()
    else:
        assert "[MASTER] Done: 5 correct, 0 failed" in master.lines()


def test_performance_slave_with_cpp_master(shm_name, procs, eshm_demo):
    """performance_test.py slave counts and ACKs the C++ demo's text messages."""
    master = procs.start("cpp_master", [eshm_demo, "master", shm_name, "--count=200", "--rate_hz=0",
                                        "--quiet=100"])
    slave = procs.python("perf_slave", EXAMPLES / "performance_test.py", "slave", shm_name, "100",
                         "--count", "200")
    assert slave.wait_exit(timeout=3 * WAIT_S) == 0, slave.output()
    assert master.wait_exit(timeout=3 * WAIT_S) == 0, master.output()
    assert "[SLAVE] Total: 200 messages" in slave.output()
    assert "[MASTER] Exiting: sent 200, received 200" in master.output()


@pytest.mark.parametrize("script,args", [
    ("simple_master.py", ()),
    ("simple_slave.py", ()),
    ("reconnect_demo.py", ("slave",)),
])
def test_examples_exit_cleanly_on_ctrl_c(shm_name, procs, script, args):
    proc = procs.python(script, EXAMPLES / script, *args, shm_name)
    proc.wait_for(r"^=== ESHM Python ")
    proc.signal(signal.SIGINT)
    assert proc.wait_exit() == 0, proc.output()
    assert "Traceback" not in proc.output()
    if script == "simple_master.py":
        assert not os.path.exists(f"/dev/shm/eshm_{shm_name}"), "the master left its segment behind"


def test_interop_sh(eshm_demo, tmp_path):
    """tests/interop/test_interop.sh, the classic script: both demo pairings, PASS/FAIL."""
    script = Path(__file__).resolve().parent / "test_interop.sh"
    env = dict(os.environ, ESHM_DEMO=eshm_demo, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                            timeout=6 * WAIT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASS: ") == 2, result.stdout
    assert "FAIL" not in result.stdout
