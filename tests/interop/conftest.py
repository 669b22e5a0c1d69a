"""Fixtures of the C++ <-> Python interop tests: binaries from the environment, unique channel names,
processes with their output in files, and a teardown that kills everything and removes the segments.

Environment: ESHM_DEMO (path to eshm_demo), ESHM_LIBESHM (path to libeshm.so). Tests that need one skip
when it is unset. Python peers run with sys.executable, which must be able to `import eshm`.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "python" / "examples"
PEER = Path(__file__).resolve().parent / "peer.py"
NODE_PEER = Path(__file__).resolve().parent / "peer.js"
NODE_PACKAGE = REPO / "node"

# Generous: the machine may be loaded (2 cores, other builds running). Nothing here asserts timing.
WAIT_S = float(os.environ.get("ESHM_INTEROP_WAIT_S", "60"))


def _env_path(var):
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"{var} is not set (tests/interop/run.sh sets it: the path to the bazel-built binary)")
    if not os.path.exists(value):
        pytest.skip(f"{var}={value} does not exist")
    return value


@pytest.fixture
def eshm_demo():
    """The path of eshm_demo ($ESHM_DEMO)."""
    return _env_path("ESHM_DEMO")


@pytest.fixture
def libeshm():
    """The path of libeshm.so ($ESHM_LIBESHM)."""
    return _env_path("ESHM_LIBESHM")


@pytest.fixture
def node():
    """The path of the node executable; skips when Node.js is not installed. The eshm Node package (node/)
    must have its dependencies (npm ci in node/; tests/interop/run.sh does it)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed")
    return path


class Proc:
    """A child process whose stdout+stderr go to a file, read back by wait_for()."""

    def __init__(self, label, argv, log_dir):
        self.label = label
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_dir) / f"{label}.{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def output(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def lines(self):
        return self.output().splitlines()

    def wait_for(self, pattern, timeout=WAIT_S, count=1):
        """Waits until `count` lines match the regex `pattern`; returns the matches. Fails on timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            matches = [m for m in (regex.search(line) for line in self.lines()) if m]
            if len(matches) >= count:
                return matches
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.label}: no {count} line(s) matching {pattern!r} within {timeout} s "
                            f"(exit code {self.popen.poll()}); output:\n{self.output()}")
            if self.popen.poll() is not None:
                # Exited: its output is complete; one more look, then give up.
                matches = [m for m in (regex.search(line) for line in self.lines()) if m]
                if len(matches) >= count:
                    return matches
                pytest.fail(f"{self.label} exited (code {self.popen.returncode}) before {count} line(s) "
                            f"matching {pattern!r}; output:\n{self.output()}")
            time.sleep(0.05)

    def wait_exit(self, timeout=WAIT_S):
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.label} did not exit within {timeout} s; output:\n{self.output()}")

    def signal(self, sig):
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        """SIGTERM (the clean exit), then SIGKILL if it does not go. Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.popen.returncode

    def kill(self):
        self.signal(signal.SIGKILL)
        try:
            self.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass

    def close_log(self):
        self._log.close()


class Procs:
    """Starts processes for one test; kills whatever is left at teardown."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.all = []
        self.names = []  # channel names whose segments teardown removes

    def start(self, label, argv):
        proc = Proc(label, argv, self.log_dir)
        self.all.append(proc)
        return proc

    def python(self, label, script, *args):
        return self.start(label, [sys.executable, script, *args])

    def node(self, label, script, *args):
        return self.start(label, [shutil.which("node"), script, *args])

    def teardown(self):
        for proc in self.all:
            proc.kill()
            proc.close_log()
        for name in self.names:
            try:
                os.unlink(f"/dev/shm/eshm_{name}")
            except FileNotFoundError:
                pass

    def dump(self):
        return "\n".join(f"--- {p.label} ({' '.join(p.argv)}):\n{p.output()}" for p in self.all)


@pytest.fixture
def procs(tmp_path, request):
    manager = Procs(tmp_path)
    yield manager
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(manager.dump())
    manager.teardown()


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def shm_name(procs):
    """A channel name no other test (or test run) uses; teardown kills the processes, then removes
    /dev/shm/eshm_<name>."""
    name = f"interop_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    procs.names.append(name)
    return name
