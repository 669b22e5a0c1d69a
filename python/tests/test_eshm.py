"""Tests of the eshm Python binding: the original wrapper's API on the C++ engine.

Peers in other processes are plain `python -c` subprocesses (the same interpreter, so the same installed
eshm). Every channel name is unique to the test and removed afterwards.
"""

import copy
import inspect
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import eshm
from eshm import (
    ESHM,
    BufferTooSmallError,
    ChannelClosedError,
    ChannelNotFoundError,
    ESHMDisconnectBehavior,
    ESHMError,
    ESHMException,
    ESHMRole,
    InvalidParameterError,
    MessageTooLargeError,
    PeerStaleError,
    RoleTakenError,
)

# ---- Helpers ----


@pytest.fixture
def name():
    """A channel name unique to this test; its segment is removed afterwards."""
    n = f"pyt_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield n
    try:
        os.unlink(f"/dev/shm/eshm_{n}")
    except FileNotFoundError:
        pass


@pytest.fixture
def pair(name):
    """A master and a slave on one channel, in this process."""
    master = ESHM(name, role=ESHMRole.MASTER)
    slave = ESHM(name, role=ESHMRole.SLAVE)
    yield master, slave
    slave.close()
    master.close()


class Peer:
    """A Python subprocess running `code` (with eshm imported and NAME set); talks line by line on stdout."""

    def __init__(self, name, code):
        prelude = f"import os, sys, time\nfrom eshm import *\nNAME = {name!r}\n"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", prelude + textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def expect_line(self, timeout=10.0):
        """The next stdout line; fails the test if none comes within `timeout` seconds."""
        result = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"peer printed no line within {timeout} s; stderr:\n{err}")
        return result[0].strip()

    def finish(self, timeout=10.0):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"peer did not exit within {timeout} s; stderr:\n{err}")
        return self.proc.returncode, out, err


# ---- The old API's surface ----


def test_public_names():
    for n in ("ESHM", "ESHMRole", "ESHMError", "ESHMDisconnectBehavior"):
        assert n in eshm.__all__
        assert hasattr(eshm, n)
    assert (ESHMRole.MASTER, ESHMRole.SLAVE, ESHMRole.AUTO) == (0, 1, 2)
    assert (ESHMDisconnectBehavior.IMMEDIATELY, ESHMDisconnectBehavior.ON_TIMEOUT,
            ESHMDisconnectBehavior.NEVER) == (0, 1, 2)


def test_error_codes_match_the_c_abi():
    header = os.path.join(os.path.dirname(__file__), "..", "..", "eshm", "eshm.h")
    expected = {"SUCCESS": 0}
    # The repository's header (Bazel puts it in the runfiles beside this file's package): every code.
    assert os.path.exists(header), f"{header} is missing: run the tests from the repository or with bazel test"
    import re

    with open(header) as f:
        for code_name, value in re.findall(r"#define ESHM_ERROR_(\w+) (-\d+)", f.read()):
            if code_name != "LAST":
                expected[code_name] = int(value)
    assert len(expected) > 20, expected
    for code_name, value in expected.items():
        assert ESHMError[code_name] == value


def test_constructor_signature_and_defaults():
    params = inspect.signature(ESHM).parameters
    assert list(params)[:9] == [
        "shm_name", "role", "disconnect_behavior", "stale_threshold_ms", "reconnect_wait_ms",
        "reconnect_retry_interval_ms", "max_reconnect_attempts", "auto_cleanup", "use_threads",
    ]
    defaults = {k: p.default for k, p in params.items()}
    assert defaults["role"] == ESHMRole.AUTO
    assert defaults["disconnect_behavior"] == ESHMDisconnectBehavior.ON_TIMEOUT
    assert defaults["stale_threshold_ms"] == 100
    assert defaults["reconnect_wait_ms"] == 5000
    assert defaults["reconnect_retry_interval_ms"] == 100
    assert defaults["max_reconnect_attempts"] == 50
    assert defaults["auto_cleanup"] is True
    assert defaults["use_threads"] is True
    read = inspect.signature(ESHM.read).parameters
    assert read["buffer_size"].default is None and read["timeout_ms"].default is None  # None: any size
    assert inspect.signature(ESHM.try_read).parameters["buffer_size"].default is None


@pytest.mark.parametrize("wait", ["spin", "sleep", "adaptive"])
def test_wait_strategies_carry_messages_both_ways(name, wait):
    with ESHM(name, role=ESHMRole.MASTER, wait=wait) as master, ESHM(name, role=ESHMRole.SLAVE, wait=wait) as slave:
        # The reader waits on another thread, so the write lands while it spins or sleeps.
        got = []
        reader = threading.Thread(target=lambda: got.append(slave.read(timeout_ms=5000)))
        reader.start()
        time.sleep(0.02)
        master.write(b"ping")
        reader.join(10)
        assert got == [b"ping"]
        slave.write(b"pong")
        assert master.read(timeout_ms=5000) == b"pong"
        with pytest.raises(TimeoutError):
            master.read(timeout_ms=20)  # a spinning wait still ends at its deadline
        with pytest.raises(TimeoutError):
            master.read_into(bytearray(8), timeout_ms=0)
        slave.write(b"into")
        buf = bytearray(8)
        assert master.read_into(buf, timeout_ms=5000) == 4 and buf[:4] == b"into"
        slave.write(b"x" * 9)
        with pytest.raises(BufferTooSmallError):
            master.read_into(buf, timeout_ms=5000)  # and the message stays queued
        assert master.read(timeout_ms=5000) == b"x" * 9
    assert inspect.signature(ESHM).parameters["wait"].default == "adaptive"


def test_unknown_wait_strategy_is_a_value_error(name):
    with pytest.raises(ValueError) as info:
        ESHM(name, role=ESHMRole.MASTER, wait="busy")
    assert isinstance(info.value, InvalidParameterError) and "spin" in str(info.value)


def test_positional_arguments_as_the_old_wrapper(name):
    with ESHM(name, ESHMRole.MASTER, ESHMDisconnectBehavior.NEVER, 200, 1000, 50, 10, True, True) as ch:
        assert ch.get_role() is ESHMRole.MASTER


def test_auto_role_takes_master_then_slave(name):
    with ESHM(name) as first, ESHM(name) as second:
        assert first.get_role() is ESHMRole.MASTER
        assert second.get_role() is ESHMRole.SLAVE
        assert isinstance(first.get_role(), ESHMRole)


def test_read_default_timeout_is_one_second(name):
    with ESHM(name, role=ESHMRole.MASTER, disconnect_behavior=ESHMDisconnectBehavior.NEVER) as ch:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            ch.read()
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 3.0


# ---- Messages ----


def test_round_trip_in_process(pair):
    master, slave = pair
    assert master.write(b"hello") is None
    assert slave.read() == b"hello"
    slave.write(b"")
    assert master.read() == b""
    master.write("text")  # str is sent as UTF-8
    assert slave.read() == b"text"
    master.write(bytearray(b"ba"))
    master.write(memoryview(b"xmvx")[1:3])
    assert slave.read() == b"ba"
    assert slave.read() == b"mv"


def test_large_message_and_order(pair):
    master, slave = pair
    big = os.urandom(300_000)
    master.write(big)
    assert slave.read(buffer_size=len(big)) == big
    for i in range(1000):
        master.write(b"%d" % i)
    assert [slave.read() for _ in range(1000)] == [b"%d" % i for i in range(1000)]


def test_master_and_slave_in_two_processes(name):
    with ESHM(name, role=ESHMRole.MASTER) as master:
        peer = Peer(name, """
            with ESHM(NAME, role=ESHMRole.SLAVE) as ch:
                print(os.getpid(), flush=True)
                while (message := ch.read(timeout_ms=5000)) != b"bye":
                    ch.write(message.upper())
        """)
        slave_pid = int(peer.expect_line())
        for word in (b"one", b"two", b"three"):
            master.write(word)
            assert master.read(timeout_ms=5000) == word.upper()
        stats = master.get_stats()  # the slave is still attached: it waits for "bye"
        assert stats["master_pid"] == os.getpid()
        assert stats["slave_pid"] == slave_pid
        assert master.get_role() is ESHMRole.MASTER
        master.write(b"bye")
        rc, _, err = peer.finish()
        assert rc == 0, err


def test_stats_after_known_traffic(name):
    # A generous stale threshold: on a loaded machine a 100 ms heartbeat gap is possible, and would
    # (rightly) make the peer look unresponsive.
    with ESHM(name, role=ESHMRole.MASTER, stale_threshold_ms=3000) as master:
        peer = Peer(name, """
            with ESHM(NAME, role=ESHMRole.SLAVE, stale_threshold_ms=3000) as ch:
                for _ in range(3):
                    ch.read(timeout_ms=5000)
                ch.write(b"a")
                ch.write(b"bb")
                print(os.getpid(), flush=True)
                assert ch.read(timeout_ms=10000) == b"bye"
        """)
        for _ in range(3):
            master.write(b"xyz")
        slave_pid = int(peer.expect_line())
        assert master.read(timeout_ms=5000) == b"a"
        # The monitor thread notices the new peer within a heartbeat or so (longer on a loaded machine).
        deadline = time.monotonic() + 5
        while not master.is_remote_alive() and time.monotonic() < deadline:
            time.sleep(0.001)
        stats = master.get_stats()
        assert set(stats) >= {
            "master_pid", "slave_pid", "master_alive", "slave_alive", "master_heartbeat", "slave_heartbeat",
            "m2s_write_count", "m2s_read_count", "s2m_write_count", "s2m_read_count", "epoch",
            "reconnect_count", "m2s_queued_bytes", "m2s_queued_messages", "s2m_queued_bytes",
            "s2m_queued_messages", "m2s_capacity", "s2m_capacity", "wake_syscalls", "wait_syscalls",
        }
        assert stats["master_pid"] == os.getpid()
        assert stats["slave_pid"] == slave_pid
        assert stats["master_alive"] is True and stats["slave_alive"] is True, (master.peer_state(), stats)
        assert stats["master_heartbeat"] > 0 and stats["slave_heartbeat"] > 0
        assert (stats["m2s_write_count"], stats["m2s_read_count"]) == (3, 3)
        assert (stats["s2m_write_count"], stats["s2m_read_count"]) == (2, 1)
        assert stats["m2s_queued_messages"] == 0 and stats["m2s_queued_bytes"] == 0
        assert stats["s2m_queued_messages"] == 1 and stats["s2m_queued_bytes"] > 0
        assert stats["epoch"] == 1
        assert stats["m2s_capacity"] == stats["s2m_capacity"] == 1 << 20
        assert master.is_remote_alive()
        assert master.read(timeout_ms=5000) == b"bb"
        master.write(b"bye")
        rc, _, err = peer.finish()
        assert rc == 0, err


def test_read_returns_the_whole_message_whatever_its_size(pair):
    master, slave = pair
    for size in (0, 1, 4096, 4097, 100_000, master.max_message_size):
        message = os.urandom(size)
        master.write(message)
        assert slave.read(timeout_ms=5000) == message
        master.write(message)
        assert slave.try_read() == message
    master.write(b"y" * 5000)
    master.write(b"z" * 3)
    # The old library's calls, with an explicit buffer size, keep their meaning.
    with pytest.raises(BufferTooSmallError):
        slave.read(4096)
    assert slave.read(5000) == b"y" * 5000
    assert slave.read(4096) == b"z" * 3


def test_buffer_too_small_raises_and_the_message_stays(pair):
    master, slave = pair
    master.write(b"x" * 100)
    with pytest.raises(BufferTooSmallError) as info:
        slave.read(buffer_size=10, timeout_ms=1000)
    assert isinstance(info.value, RuntimeError)
    assert info.value.code == ESHMError.BUFFER_TOO_SMALL
    assert info.value.message_size == 100
    with pytest.raises(BufferTooSmallError):
        slave.try_read(buffer_size=99)
    assert slave.next_message_size() == 100
    assert slave.read(buffer_size=100) == b"x" * 100
    assert slave.next_message_size() is None


def test_try_read_returns_none_when_empty(pair):
    master, slave = pair
    assert slave.try_read() is None
    assert master.try_read() is None
    master.write(b"m")
    assert slave.try_read() == b"m"
    assert slave.try_read() is None


def test_read_timeout_raises_timeout_error(pair):
    _, slave = pair
    start = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        slave.read(timeout_ms=150)
    elapsed = time.monotonic() - start
    assert 0.14 <= elapsed < 2.0
    assert isinstance(info.value, ESHMException)
    assert info.value.code == ESHMError.TIMEOUT


def test_try_write_and_write_timeout_when_the_ring_is_full(name):
    with ESHM(name, role=ESHMRole.MASTER, m2s_capacity=4096) as master, \
            ESHM(name, role=ESHMRole.SLAVE) as slave:
        sent = 0
        while master.try_write(b"z" * 100):
            sent += 1
        assert 10 < sent < 41
        with pytest.raises(TimeoutError):
            master.write(b"z" * 100, timeout_ms=100)
        # The reader hands space back in batches; once it has drained the ring, the writer has room again.
        drained = 0
        while slave.try_read() is not None:
            drained += 1
        assert drained == sent
        master.write(b"z" * 100, timeout_ms=100)
        assert slave.read() == b"z" * 100


def test_message_too_large(pair):
    master, _ = pair
    limit = master.max_message_size
    with pytest.raises(MessageTooLargeError) as info:
        master.write(b"\0" * (limit + 1))
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    assert info.value.code == ESHMError.MESSAGE_TOO_LARGE
    # The message says how large the message is and what the limit is, and so do the attributes.
    assert f"{limit + 1} bytes" in str(info.value) and f"{limit} bytes" in str(info.value)
    assert (info.value.message_size, info.value.max_message_size) == (limit + 1, limit)
    with pytest.raises(MessageTooLargeError) as info:
        master.try_write(b"\0" * (limit + 7))
    assert info.value.message_size == limit + 7 and str(limit + 7) in str(info.value)
    copied = pickle.loads(pickle.dumps(info.value))  # exceptions cross process boundaries whole
    assert type(copied) is MessageTooLargeError and copied.message_size == limit + 7
    assert copied.max_message_size == limit and str(copied) == str(info.value)


def test_pickling_a_channel_says_it_cannot_and_why(pair):
    master, slave = pair
    for ch in (master, slave):
        for attempt in (lambda: pickle.dumps(ch), lambda: copy.copy(ch), lambda: copy.deepcopy(ch)):
            with pytest.raises(TypeError) as info:
                attempt()
            text = str(info.value)
            assert "cannot pickle" in text and ch.name in text and "open an ESHM" in text, text
    master.write(b"m")
    view = slave.recv_view()
    with view as mv:
        with pytest.raises(TypeError, match="cannot pickle"):
            pickle.dumps(view)
        assert bytes(mv) == b"m"


# ---- Opening ----


def test_role_taken_names_the_holder_pid(name):
    peer = Peer(name, """
        ch = ESHM(NAME, role=ESHMRole.MASTER)
        print(os.getpid(), flush=True)
        time.sleep(30)
    """)
    try:
        holder = int(peer.expect_line())
        with pytest.raises(RoleTakenError) as info:
            ESHM(name, role=ESHMRole.MASTER)
        err = info.value
        assert isinstance(err, FileExistsError) and isinstance(err, RuntimeError)
        assert err.code == ESHMError.ROLE_TAKEN
        assert str(holder) in str(err)
    finally:
        peer.proc.kill()
        peer.proc.wait()


def test_bad_name_and_bad_options_raise_value_error(name):
    with pytest.raises(ValueError) as info:
        ESHM("bad/name", role=ESHMRole.MASTER)
    assert isinstance(info.value, InvalidParameterError) and info.value.code == ESHMError.INVALID_PARAM
    with pytest.raises(ValueError):
        ESHM(name, role=ESHMRole.MASTER, stale_threshold_ms=0)
    with pytest.raises(ValueError):
        ESHM(name, role=7)
    with pytest.raises(TypeError):
        ESHM(b"bytes-name")


def test_role_and_disconnect_behavior_by_name(name):
    with ESHM(name, role="master", disconnect_behavior="never") as master, \
            ESHM(name, role="Slave", disconnect_behavior="IMMEDIATELY") as slave:
        assert master.get_role() is ESHMRole.MASTER and slave.get_role() is ESHMRole.SLAVE
        master.write(b"by name")
        assert slave.read() == b"by name"
    with ESHM(name, role="AUTO") as first:
        assert first.get_role() is ESHMRole.MASTER
    with ESHM(name, 0, 2) as by_number:  # the enums' numbers, as the old positional calls pass them
        assert by_number.get_role() is ESHMRole.MASTER


def test_wrong_arguments_name_their_parameter(name):
    with pytest.raises(ValueError) as info:
        ESHM(name, role="boss")
    assert isinstance(info.value, InvalidParameterError) and "role" in str(info.value)
    assert "'master'" in str(info.value)
    with pytest.raises(ValueError, match="disconnect_behavior"):
        ESHM(name, disconnect_behavior="later")
    with pytest.raises(ValueError, match="role"):
        ESHM(name, role=5)
    for kwargs, pname in ((dict(role=1.5), "role"), (dict(stale_threshold_ms="100"), "stale_threshold_ms"),
                          (dict(reconnect_wait_ms=None), "reconnect_wait_ms"),
                          (dict(m2s_capacity=1e6), "m2s_capacity"), (dict(max_message_bytes=b"1"), "max_message_bytes")):
        with pytest.raises(TypeError) as info:
            ESHM(name, **kwargs)
        assert pname in str(info.value), (kwargs, str(info.value))
    with pytest.raises(ValueError, match="m2s_capacity"):
        ESHM(name, role="master", m2s_capacity=-1)
    with pytest.raises(TypeError, match="buffer_size"):
        with ESHM(name, role="master") as ch:
            ch.read(buffer_size="4096")


def test_slave_without_master_raises_file_not_found(name):
    with pytest.raises(ChannelNotFoundError) as info:
        ESHM(name, role=ESHMRole.SLAVE, max_reconnect_attempts=2, reconnect_retry_interval_ms=10)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.code == ESHMError.NOT_FOUND


def test_context_manager_closes(name):
    with ESHM(name, role=ESHMRole.MASTER) as ch:
        assert not ch.closed
        assert os.path.exists(f"/dev/shm/eshm_{name}")
    assert ch.closed
    assert not os.path.exists(f"/dev/shm/eshm_{name}")  # auto_cleanup
    with pytest.raises(ChannelClosedError) as info:
        ch.read()
    assert info.value.code == ESHMError.CLOSED
    with pytest.raises(ValueError):
        ch.write(b"x")
    ch.close()  # idempotent
    with ESHM(name, role=ESHMRole.MASTER):  # the role is free again
        pass


# ---- Peers going away ----


def test_on_timeout_gives_up_after_reconnect_wait(name):
    master = ESHM(name, role=ESHMRole.MASTER)
    slave = ESHM(name, role=ESHMRole.SLAVE, reconnect_wait_ms=300)
    try:
        master.write(b"last")
        master.close()
        assert slave.read() == b"last"  # what was queued is still delivered
        start = time.monotonic()
        with pytest.raises(PeerStaleError) as info:
            slave.read(timeout_ms=5000)
        elapsed = time.monotonic() - start
        assert 0.25 <= elapsed < 2.0
        assert info.value.code == ESHMError.MASTER_STALE
        assert isinstance(info.value, RuntimeError)
    finally:
        slave.close()
        master.close()


def test_negative_timeout_waits_for_a_slave_that_attaches_later(name):
    """read(timeout_ms=-1) waits forever (the documented meaning of a negative timeout), also on a master
    whose slave has not attached yet and with a reconnect window far shorter than the wait."""
    with ESHM(name, role=ESHMRole.MASTER, reconnect_wait_ms=50) as master:
        got = []
        reader = threading.Thread(target=lambda: got.append(master.read(timeout_ms=-1)))
        reader.start()
        time.sleep(0.4)  # eight reconnect windows
        assert reader.is_alive() and not got
        with ESHM(name, role=ESHMRole.SLAVE) as slave:
            slave.write(b"late")
            reader.join(10)
            if reader.is_alive():  # a watchdog: end the read, then fail
                master.close()
                reader.join(10)
            assert got == [b"late"]
        # A finite timeout without a slave ends as a timeout, not as a stale peer.
    with ESHM(name, role=ESHMRole.MASTER, reconnect_wait_ms=20) as alone:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            alone.read(timeout_ms=200)
        assert time.monotonic() - start >= 0.19


def test_immediately_fails_at_once(name):
    with ESHM(name, role=ESHMRole.MASTER, disconnect_behavior=ESHMDisconnectBehavior.IMMEDIATELY) as master:
        start = time.monotonic()
        with pytest.raises(PeerStaleError) as info:
            master.read(timeout_ms=5000)
        assert time.monotonic() - start < 1.0
        assert info.value.code == ESHMError.SLAVE_STALE


# ---- Threads and signals ----


def test_blocking_read_releases_the_gil(pair):
    _, slave = pair
    counts = []
    stop = threading.Event()

    def count():
        n = 0
        while not stop.is_set():
            n += 1
        counts.append(n)

    counter = threading.Thread(target=count)
    counter.start()
    time.sleep(0.05)
    try:
        with pytest.raises(TimeoutError):
            # The counting thread runs while this one blocks; only 50 ms slices hold the GIL briefly.
            before = time.monotonic()
            slave.read(timeout_ms=500)
    finally:
        stop.set()
        counter.join()
    assert time.monotonic() - before >= 0.45
    assert counts[0] > 100_000


def test_reader_and_writer_threads(pair):
    master, slave = pair
    n = 5000
    received = []

    def reader():
        for _ in range(n):
            received.append(slave.read(timeout_ms=5000))

    t = threading.Thread(target=reader)
    t.start()
    for i in range(n):
        master.write(b"%d" % i, timeout_ms=5000)
    t.join(30)
    assert received == [b"%d" % i for i in range(n)]


def test_close_from_another_thread_ends_a_blocked_read(pair):
    _, slave = pair
    errors = []

    def blocked():
        try:
            slave.read(timeout_ms=10_000)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    t = threading.Thread(target=blocked)
    t.start()
    time.sleep(0.2)
    start = time.monotonic()
    slave.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - start < 1.0
    assert len(errors) == 1 and isinstance(errors[0], ChannelClosedError)


BLOCKING_CALLS = {
    # name: (needs a full ring, call on the blocked endpoint)
    "read": (False, lambda ch: ch.read(timeout_ms=20_000)),
    "read_into": (False, lambda ch: ch.read_into(bytearray(64), timeout_ms=20_000)),
    "read_many": (False, lambda ch: ch.read_many(10, timeout_ms=20_000)),
    "recv_view": (False, lambda ch: ch.recv_view(timeout_ms=20_000)),
    "write": (True, lambda ch: ch.write(b"y" * 100, timeout_ms=20_000)),
    "write_many": (True, lambda ch: ch.write_many([b"y" * 100] * 3, timeout_ms=20_000)),
    "claim": (True, lambda ch: ch.claim(100, timeout_ms=20_000)),
}


@pytest.mark.parametrize("call", sorted(BLOCKING_CALLS))
def test_close_from_another_thread_ends_every_kind_of_blocked_call_at_once(pairs, call):
    # The engine's wait ends when close() shuts the channel down: no call waits out a slice, and what was
    # queued stays for the peer.
    full, run = BLOCKING_CALLS[call]
    master, slave = pairs()[0]
    queued = 0
    if full:
        while master.try_write(b"x" * 100):
            queued += 1
    blocked = master if full else slave
    errors = []
    started = threading.Event()

    def worker():
        started.set()
        try:
            run(blocked)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            errors.append(e)

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    time.sleep(0.2)  # into the engine's wait
    start = time.monotonic()
    blocked.close()
    t.join(5)
    assert not t.is_alive()
    assert time.monotonic() - start < 1.0
    assert len(errors) == 1 and isinstance(errors[0], ChannelClosedError), errors
    assert "was closed during the call" in str(errors[0])
    if full:  # nothing half-sent: the reader gets exactly what was queued
        assert slave.read_many(1000, timeout_ms=0) == [b"x" * 100] * queued


def test_ctrl_c_interrupts_a_blocked_read(name):
    peer = Peer(name, """
        ch = ESHM(NAME, role=ESHMRole.MASTER)
        print("ready", flush=True)
        ch.read(timeout_ms=10000)
        print("read returned", flush=True)
    """)
    assert peer.expect_line() == "ready"
    time.sleep(0.3)  # let it enter the blocking read
    start = time.monotonic()
    peer.proc.send_signal(signal.SIGINT)
    rc, out, err = peer.finish(timeout=5)  # a watchdog; it takes ~50 ms
    elapsed = time.monotonic() - start
    assert "KeyboardInterrupt" in err, err
    assert "read returned" not in out
    assert rc != 0
    assert elapsed < 5


@pytest.mark.parametrize("call", ["write(b'x' * 100, timeout_ms=10000)", "claim(100, timeout_ms=10000)",
                                  "write_many([b'x' * 100] * 3, timeout_ms=10000)"])
def test_ctrl_c_interrupts_a_write_blocked_on_a_full_ring(name, call):
    # A slave is attached (and never reads), so the call waits on the ring itself, not for a peer.
    peer = Peer(name, f"""
        ch = ESHM(NAME, role=ESHMRole.MASTER, m2s_capacity=4096)
        reader = ESHM(NAME, role=ESHMRole.SLAVE)
        while ch.try_write(b"x" * 100):
            pass
        print("ready", flush=True)
        ch.{call}
        print("call returned", flush=True)
    """)
    assert peer.expect_line() == "ready"
    time.sleep(0.3)
    peer.proc.send_signal(signal.SIGINT)
    rc, out, err = peer.finish(timeout=5)
    assert "KeyboardInterrupt" in err, err
    assert "call returned" not in out
    assert rc != 0


def test_ctrl_c_interrupts_a_slave_waiting_for_its_master(name):
    # max_reconnect_attempts=0: the open would wait forever for a master that never comes.
    peer = Peer(name, """
        print("ready", flush=True)
        ch = ESHM(NAME, role=ESHMRole.SLAVE, max_reconnect_attempts=0)
        print("open returned", flush=True)
    """)
    assert peer.expect_line() == "ready"
    time.sleep(0.3)  # let it enter the open
    peer.proc.send_signal(signal.SIGINT)
    rc, out, err = peer.finish(timeout=5)  # a watchdog; it takes about 50 ms
    assert "KeyboardInterrupt" in err, err
    assert "open returned" not in out
    assert rc != 0
    assert not os.path.exists(f"/dev/shm/eshm_{name}")  # a slave creates nothing


def test_forked_child_disowns_the_parents_channel(pair):
    master, slave = pair
    pid = os.fork()
    if pid == 0:  # the child: the inherited objects are closed here, and closing them must not touch the parent's
        code = 1
        try:
            try:
                master.write(b"from the child")
            except ChannelClosedError as e:
                if "fork" in str(e) and master.closed:
                    code = 0
            master.close()
            slave.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert slave.try_read() is None  # the child wrote nothing
    master.write(b"parent")  # the parent's channel is intact
    assert slave.read() == b"parent"
    assert os.path.exists(f"/dev/shm/eshm_{master.name}")  # the child's close() did not remove the name
    stats = master.get_stats()
    assert (stats["master_pid"], stats["slave_pid"]) == (os.getpid(), os.getpid())
