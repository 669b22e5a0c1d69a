"""eshm.WaitSet: one wait on many channels, from Python; misuse gets a clear error and loses nothing."""

import os
import signal
import threading
import time
import uuid

import pytest

from eshm import CLOSED, ESHM, PEER_CHANGED, READABLE, WRITABLE, ChannelClosedError, WaitSet


def settle(ws):
    """Reports (and so forgets) the peer changes of attaching."""
    while ws.wait(timeout_ms=50):
        pass


def test_wait_returns_the_channel_that_was_written_to(pairs):
    (m1, s1), (m2, s2), (m3, s3) = pairs(3)
    ws = WaitSet()
    for s in (s1, s2, s3):
        ws.add(s)
    assert len(ws) == 3
    settle(ws)
    timer = threading.Timer(0.05, lambda: m2.write(b"to two"))
    timer.start()
    start = time.monotonic()
    ready = ws.wait(timeout_ms=5000)
    timer.join()
    assert ready == [s2]
    assert time.monotonic() - start >= 0.04
    assert s2.try_read() == b"to two"
    assert ws.wait(timeout_ms=0) == []


def test_every_ready_channel_is_reported_with_its_events(pairs):
    (m1, s1), (m2, s2) = pairs(2)
    ws = WaitSet()
    ws.add(s1)
    ws.add(m2, readable=False, writable=True, write_size=100)
    settle_events = ws.wait_events(timeout_ms=50)
    m1.write(b"x")
    events = dict((ch, ev) for ch, ev in ws.wait_events(timeout_ms=1000))
    assert events[s1] & READABLE
    assert events[m2] & WRITABLE
    assert all(isinstance(ev, int) for _, ev in settle_events)


def test_timeout_and_wake(pairs):
    ((m, s),) = pairs(1)
    ws = WaitSet()
    ws.add(s)
    settle(ws)
    start = time.monotonic()
    assert ws.wait(timeout_ms=100) == []
    assert time.monotonic() - start >= 0.09
    threading.Timer(0.05, ws.wake).start()
    start = time.monotonic()
    assert ws.wait() == []  # no limit: only the wake ends it
    assert time.monotonic() - start < 5


def test_ctrl_c_ends_a_wait(pairs):
    ((m, s),) = pairs(1)
    ws = WaitSet()
    ws.add(s)
    settle(ws)
    timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        ws.wait(timeout_ms=10_000)
    timer.join()
    # The wait let go of the channel: it still reads.
    m.write(b"after")
    assert s.read(timeout_ms=1000) == b"after"


def test_bad_use_gets_a_clear_error_and_changes_nothing(pairs):
    (m1, s1), (m2, s2) = pairs(2)
    ws = WaitSet()
    ws.add(s1)
    with pytest.raises(ValueError, match="already in this set"):
        ws.add(s1, writable=True)
    with pytest.raises(ValueError, match="readable, writable or both"):
        ws.add(s2, readable=False)
    with pytest.raises(KeyError, match="not in this set"):
        ws.remove(s2)
    s2.close()
    with pytest.raises(ChannelClosedError):
        ws.add(s2)
    assert len(ws) == 1


def test_a_channel_closed_by_another_thread_ends_the_wait(pairs):
    (m1, s1), (m2, s2) = pairs(2)
    ws = WaitSet()
    ws.add(s1)
    ws.add(s2)
    settle(ws)
    closer = threading.Thread(target=lambda: (time.sleep(0.05), s2.close()))
    closer.start()
    start = time.monotonic()
    events = ws.wait_events(timeout_ms=10_000)
    closer.join()
    assert time.monotonic() - start < 5
    assert (s2, CLOSED) in [(ch, ev & CLOSED) for ch, ev in events]
    assert s2.closed
    ws.remove(s2)
    m1.write(b"still")
    assert ws.wait(timeout_ms=1000) == [s1]


def test_a_second_thread_cannot_wait_on_the_same_set(pairs):
    ((m, s),) = pairs(1)
    ws = WaitSet()
    ws.add(s)
    settle(ws)
    t = threading.Thread(target=lambda: ws.wait(timeout_ms=2000))
    t.start()
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        ws.wait(timeout_ms=10)
    with pytest.raises(RuntimeError, match="another thread"):
        ws.add(s)
    ws.wake()
    t.join()


def test_peer_death_ends_the_wait(tmp_path):
    name = f"pywaitset_death_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(r)
            slave = ESHM(name, role="slave", max_reconnect_attempts=0)
            os.write(w, b"1")
            time.sleep(60)
            slave.close()
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    master = ESHM(name, role="master", m2s_capacity=4096, s2m_capacity=4096)
    try:
        assert os.read(r, 1) == b"1"
        ws = WaitSet()
        ws.add(master)
        deadline = time.monotonic() + 5
        while master.peer_state() != "alive" and time.monotonic() < deadline:
            ws.wait(timeout_ms=100)
        settle(ws)
        threading.Timer(0.05, lambda: os.kill(pid, signal.SIGKILL)).start()
        events = ws.wait_events(timeout_ms=10_000)
        assert any(ch is master and ev & PEER_CHANGED for ch, ev in events)
        assert master.peer_state() == "dead"
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        master.close()
        os.close(r)
