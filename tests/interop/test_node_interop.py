"""Node.js <-> C++ and Node.js <-> Python interop: real processes, through the eshm Node package (node/).

- the C++ demo (eshm_demo, $ESHM_DEMO) with a Node peer (tests/interop/peer.js), both pairings: expected
  lines on both sides;
- binary payloads of every size class, both directions, between the Node package and the Cython package
  (tests/interop/peer.py), both pairings, checked with SHA-256;
- the universal-bridge example (examples/universal_bridge/run.sh): a Python producer, a Node.js and a C++
  consumer see the same readings.

The Node peers use $ESHM_LIBESHM. Skips only when node is not installed. Teardown kills every process
and removes /dev/shm/eshm_<name>.
"""

import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import NODE_PEER, PEER, REPO, WAIT_S

COUNT = 5


def test_node_master_cpp_slave(shm_name, procs, eshm_demo, libeshm, node):
    master = procs.node("node_master", NODE_PEER, "demo", "master", shm_name, "--count", str(COUNT))
    master.wait_for(r"^\[MASTER\] Initialized with role: MASTER$")
    slave = procs.start("cpp_slave", [eshm_demo, "slave", shm_name, f"--count={COUNT}"])
    assert slave.wait_exit() == 0, slave.output()
    assert master.wait_exit() == 0, master.output()

    out = slave.lines()
    assert "[SLAVE] Initialized with role: SLAVE" in out
    for i in range(COUNT):
        text = f"Hello from Node master #{i}"
        assert f"[SLAVE] Received ({len(text)} bytes): {text}" in out
        assert f"[SLAVE] Sent: ACK from slave #{i}" in out
    out = master.lines()
    for i in range(COUNT):
        assert f"[MASTER] Sent: Hello from Node master #{i}" in out
        assert f"[MASTER] Received: ACK from slave #{i}" in out
    assert out[-1] == "DONE"


def test_cpp_master_node_slave(shm_name, procs, eshm_demo, libeshm, node):
    master = procs.start("cpp_master", [eshm_demo, "master", shm_name, f"--count={COUNT}", "--rate_hz=20"])
    master.wait_for(r"^\[MASTER\] Initialized with role: MASTER$")
    slave = procs.node("node_slave", NODE_PEER, "demo", "slave", shm_name, "--count", str(COUNT))
    assert slave.wait_exit() == 0, slave.output()
    assert master.wait_exit() == 0, master.output()

    out = slave.lines()
    assert out[0] == "[SLAVE] Initialized with role: SLAVE"
    for i in range(COUNT):
        assert f"[SLAVE] Received (20 bytes): Hello from master #{i}" in out
        assert f"[SLAVE] Sent: ACK from Node slave #{i}" in out
    assert out[-1] == "DONE"
    out = master.lines()
    for i in range(COUNT):
        assert f"[MASTER] Sent: Hello from master #{i}" in out
        assert f"[MASTER] Received: ACK from Node slave #{i}" in out
    assert f"[MASTER] Exiting: sent {COUNT}, received {COUNT}" in out


def _records(proc, tag):
    return [tuple(line.split()[1:]) for line in proc.lines() if line.startswith(tag + " ")]


@pytest.mark.parametrize("master_side", ["node", "python"])
def test_node_python_binary_payloads(shm_name, procs, libeshm, node, master_side):
    """Every size class, 0 bytes to the maximum, master->slave and echoed back, SHA-256 on both sides."""
    node_role, py_role = ("master", "slave") if master_side == "node" else ("slave", "master")
    node_args = (NODE_PEER, "payloads", node_role, shm_name)
    py_args = (PEER, "payloads", shm_name, "--binding", "cython", "--role", py_role)
    if master_side == "node":
        master = procs.node("node_master", *node_args)
        master.wait_for(r"^READY ")
        slave = procs.python("py_slave", *py_args)
    else:
        master = procs.python("py_master", *py_args)
        master.wait_for(r"^READY ")
        slave = procs.node("node_slave", *node_args)
    assert slave.wait_exit(timeout=3 * WAIT_S) == 0, slave.output()
    assert master.wait_exit(timeout=3 * WAIT_S) == 0, master.output()

    sent, echoed, received = _records(master, "SENT"), _records(master, "ECHO"), _records(slave, "RECV")
    sizes = [int(size) for _, size, _ in sent]
    max_size = int(master.lines()[0].split("max=")[1])
    assert max_size >= 65536
    for size in (0, 1, 15, 16, 255, 4096, 65536, max_size - 1, max_size):
        assert size in sizes, f"size {size} not sent: {sizes}"
    assert len(set(h for _, _, h in sent)) == len(sent), "payloads should all differ"
    assert sent == received, "what the slave received differs from what the master sent"
    assert sent == echoed, "what the master got back differs from what it sent"
    assert "TOO_LARGE_REFUSED" in master.lines()
    assert master.lines()[-1] == f"DONE {len(sent)}"
    assert slave.lines()[-1] == f"DONE {len(sent)}"


def test_universal_bridge(tmp_path, node, eshm_demo):
    """examples/universal_bridge/run.sh: Python producer, Node.js and C++ consumers see the same readings."""
    script = REPO / "examples" / "universal_bridge" / "run.sh"
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    base = f"bridge_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        result = subprocess.run(["bash", str(script), "--seconds", "1", "--rate-hz", "20", "--name", base],
                                env=env, capture_output=True, text=True, timeout=10 * WAIT_S)
    finally:
        for side in ("node", "cpp"):
            try:
                os.unlink(f"/dev/shm/eshm_{base}_{side}")
            except FileNotFoundError:
                pass
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = result.stdout.splitlines()

    def readings(prefix):
        return [line[len(prefix):] for line in lines if line.startswith(prefix)]

    sent = readings("[python] sent ")
    assert len(sent) == 20, output
    assert [json.loads(r)["seq"] for r in sent] == list(range(20))
    assert readings("[node] got ") == sent, output
    assert readings("[c++] got ") == sent, output
    assert "[node] done: 20 readings" in lines
    assert any(line.startswith("[c++] done: 20 readings, mean ") for line in lines), output
    assert "BRIDGE OK: Python, Node.js and C++ saw the same 20 readings" in lines
