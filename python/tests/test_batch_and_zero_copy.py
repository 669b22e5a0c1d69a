"""Tests of the binding's batch calls (write_many, read_many), caller-owned buffers (read_into), zero-copy
views (recv_view, claim), and handle hygiene (ResourceWarning, fork, repr).

No test asserts how long anything takes: other jobs share the machine.
"""

import array
import gc
import os
import threading
import uuid
import warnings

import pytest

import eshm
from eshm import (
    ESHM,
    BufferTooSmallError,
    ChannelClosedError,
    Claim,
    CorruptError,
    ESHMRole,
    ForkedChannelError,
    InvalidParameterError,
    MessageTooLargeError,
    MessageView,
)


@pytest.fixture
def name():
    n = f"pyb_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield n
    try:
        os.unlink(f"/dev/shm/eshm_{n}")
    except FileNotFoundError:
        pass


@pytest.fixture
def pair(name):
    master = ESHM(name, role=ESHMRole.MASTER)
    slave = ESHM(name, role=ESHMRole.SLAVE)
    yield master, slave
    slave.close()
    master.close()


@pytest.fixture
def small_pair(name):
    """A master whose outgoing ring holds only a few dozen 100-byte messages."""
    master = ESHM(name, role=ESHMRole.MASTER, m2s_capacity=4096)
    slave = ESHM(name, role=ESHMRole.SLAVE)
    yield master, slave
    slave.close()
    master.close()


# ---- write_many / read_many ----


def test_write_many_and_read_many_round_trip(pair):
    master, slave = pair
    messages = [b"a", bytearray(b"bb"), memoryview(b"xccc")[1:], "d\u00e9", b""]
    assert master.write_many(iter(messages)) == 5  # any iterable, any bytes-like, str as UTF-8
    assert slave.read_many() == [b"a", b"bb", b"ccc", "d\u00e9".encode(), b""]
    assert master.write_many([]) == 0


def test_read_many_takes_at_most_max_messages_and_keeps_order(pair):
    master, slave = pair
    assert master.write_many(b"%d" % i for i in range(10)) == 10
    assert slave.read_many(max_messages=3) == [b"0", b"1", b"2"]
    assert slave.read_many(max_messages=100) == [b"%d" % i for i in range(3, 10)]
    with pytest.raises(InvalidParameterError):
        slave.read_many(max_messages=0)


def test_read_many_waits_only_for_the_first(pair):
    master, slave = pair
    with pytest.raises(TimeoutError):
        slave.read_many(timeout_ms=50)
    master.write(b"one")
    assert slave.read_many(max_messages=10, timeout_ms=-1) == [b"one"]


def test_read_many_buffer_size(pair):
    master, slave = pair
    master.write_many([b"ab", b"abcdef", b"x"])
    assert slave.read_many(buffer_size=4) == [b"ab"]  # the large one ends the list and stays queued
    with pytest.raises(BufferTooSmallError) as info:
        slave.read_many(buffer_size=4)
    assert info.value.message_size == 6
    assert slave.read_many() == [b"abcdef", b"x"]


def test_write_many_rejects_a_too_large_message_before_sending_anything(pair):
    master, slave = pair
    with pytest.raises(MessageTooLargeError):
        master.write_many([b"ok", b"\0" * (master.max_message_size + 1)])
    assert slave.try_read() is None


def test_write_many_on_a_full_ring_returns_the_count_sent(small_pair):
    master, slave = small_pair
    sent = master.write_many([b"z" * 100] * 200, timeout_ms=0)
    assert 0 < sent < 200
    with pytest.raises(TimeoutError):  # nothing fits: an error, as write()
        master.write_many([b"z" * 100], timeout_ms=0)
    received = []
    while True:
        got = slave.read_many(timeout_ms=0) if slave.next_message_size() is not None else []
        if not got:
            break
        received += got
    assert len(received) == sent


def test_write_many_waits_for_a_reader(small_pair):
    master, slave = small_pair
    total = 300
    received = []

    def reader():
        while len(received) < total:
            received.extend(slave.read_many(timeout_ms=20_000))

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert master.write_many((b"%05d" % i for i in range(total)), timeout_ms=20_000) == total
    finally:
        t.join(30)
    assert received == [b"%05d" % i for i in range(total)]


def test_read_many_releases_the_gil(pair):
    """A Python thread must run (it needs the GIL) for the blocked read_many to get anything at all."""
    master, slave = pair
    entered = threading.Event()
    progress = []

    def helper():
        entered.wait()
        n = 0
        for _ in range(200_000):  # pure Python: impossible while the main thread holds the GIL
            n += 1
        progress.append(n)
        master.write_many([b"x", b"y"])

    t = threading.Thread(target=helper)
    t.start()
    try:
        entered.set()
        got = slave.read_many(timeout_ms=20_000)
    finally:
        t.join(30)
    assert progress == [200_000]
    got += slave.read_many(timeout_ms=1000) if len(got) < 2 else []
    assert got == [b"x", b"y"]


def test_flush(pair):
    master, slave = pair
    master.flush()  # nothing staged: harmless
    master.write(b"m")
    master.flush()
    assert slave.read() == b"m"


def test_batch_calls_on_a_closed_channel(pair):
    master, slave = pair
    master.close()
    with pytest.raises(ChannelClosedError):
        master.write_many([b"a"])
    with pytest.raises(ChannelClosedError):
        master.flush()


# ---- read_into ----


def test_read_into_bytearray_memoryview_and_array(pair):
    master, slave = pair
    master.write_many([b"hello", b"world!", bytes(array.array("d", [1.5, -2.0]))])
    buf = bytearray(16)
    n = slave.read_into(buf)
    assert (n, bytes(buf[:n])) == (5, b"hello")
    n = slave.read_into(memoryview(buf)[4:])
    assert (n, bytes(buf[4:4 + n])) == (6, b"world!")
    doubles = array.array("d", [0.0, 0.0])
    assert slave.read_into(doubles) == 16
    assert list(doubles) == [1.5, -2.0]


def test_read_into_numpy(pair):
    np = pytest.importorskip("numpy")
    master, slave = pair
    master.write(np.arange(4, dtype=np.int32).tobytes())
    out = np.zeros(4, dtype=np.int32)
    assert slave.read_into(out) == 16
    assert out.tolist() == [0, 1, 2, 3]


def test_read_into_rejects_read_only_and_too_small_buffers(pair):
    master, slave = pair
    master.write(b"0123456789")
    with pytest.raises((TypeError, BufferError)):
        slave.read_into(b"immutable bytes")
    with pytest.raises(BufferTooSmallError) as info:
        slave.read_into(bytearray(4))
    assert info.value.message_size == 10
    buf = bytearray(10)
    assert slave.read_into(buf, timeout_ms=0) == 10 and buf == b"0123456789"  # it stayed queued
    with pytest.raises(TimeoutError):
        slave.read_into(buf, timeout_ms=20)


# ---- recv_view ----


def test_recv_view_reads_in_place(pair):
    master, slave = pair
    master.write_many([b"first message", b"second"])
    view = slave.recv_view()
    assert isinstance(view, MessageView) and len(view) == 13
    with view as mv:
        assert isinstance(mv, memoryview) and mv.readonly
        assert bytes(mv) == b"first message"
        assert bytes(mv[6:]) == b"message"  # a temporary slice, gone at once
        with pytest.raises(TypeError):
            mv[0] = 0
    assert view.ended
    with pytest.raises(ValueError):
        mv.tobytes()  # the memoryview was released with the message
    assert slave.read() == b"second"


# The m2s ring's data starts after the 384-byte header and its 384-byte control block (eshm/layout.h); a
# record is a 16-byte header and the payload. Cutting the file inside the first page damages no header.
M2S_DATA = 768
RECORD_HEADER = 16


def test_read_many_of_a_truncated_segment_raises_never_returns_a_damaged_message(pair, name):
    master, slave = pair
    assert master.write_many([bytes([i + 1]) * 1000 for i in range(3)]) == 3
    # Into the second message's payload: its tail, and all that follows, now read as zeros.
    os.truncate(f"/dev/shm/eshm_{name}", M2S_DATA + (RECORD_HEADER + 1008) + RECORD_HEADER + 100)
    with pytest.raises(CorruptError, match="truncated"):
        slave.read_many()
    with pytest.raises(CorruptError):
        slave.read()  # for good


def test_ending_a_view_of_a_truncated_segment_raises(pair, name):
    master, slave = pair
    master.write(b"\x01" * 1000)
    with pytest.raises(CorruptError, match="truncated"):
        with slave.recv_view() as mv:
            assert bytes(mv) == b"\x01" * 1000
            os.truncate(f"/dev/shm/eshm_{name}", M2S_DATA + RECORD_HEADER + 500)
            # The residual limit: the view itself turns to zeros under the reader...
            assert bytes(mv[500:]) == bytes(500)
        # ...and ending it says so.


def test_recv_view_timeout_leaves_the_channel_usable(pair):
    master, slave = pair
    with pytest.raises(TimeoutError):
        slave.recv_view(timeout_ms=20)
    master.write(b"after")
    assert slave.read() == b"after"


def test_reading_again_inside_a_recv_view_block_raises(pair):
    master, slave = pair
    master.write_many([b"1", b"2"])
    with slave.recv_view() as mv:
        with pytest.raises(BufferError):
            slave.read(timeout_ms=10)
        with pytest.raises(BufferError):
            slave.try_read()
        assert bytes(mv) == b"1"
    assert slave.read() == b"2"


def test_close_with_a_live_view_raises_buffer_error(pair):
    master, slave = pair
    master.write(b"held")
    with slave.recv_view() as mv:
        with pytest.raises(BufferError):
            slave.close()
        assert not slave.closed
        assert bytes(mv) == b"held"  # still valid
    slave.close()
    assert slave.closed


def test_close_ends_a_view_that_exports_nothing(pair):
    master, slave = pair
    master.write(b"x")
    view = slave.recv_view()
    slave.close()
    assert view.ended
    with pytest.raises(ValueError):
        memoryview(view)


def test_ending_a_view_while_a_slice_is_alive(pair):
    master, slave = pair
    master.write_many([b"abcdef", b"next"])
    with pytest.raises(BufferError):
        with slave.recv_view() as mv:
            kept = mv[2:4]
    assert bytes(kept) == b"cd"  # the message is still in place
    with pytest.raises(BufferError):
        slave.close()
    kept.release()  # the last buffer: the message is released now
    assert slave.read() == b"next"


def test_recv_view_from_a_thread_waits_for_the_other_threads_view(pair):
    master, slave = pair
    master.write_many([b"a", b"b"])
    got = []
    with slave.recv_view() as mv:
        t = threading.Thread(target=lambda: got.append(slave.read(timeout_ms=20_000)))
        t.start()
        first = bytes(mv)
    t.join(30)
    assert (first, got) == (b"a", [b"b"])


# ---- claim ----


def test_claim_commits_on_exit(pair):
    master, slave = pair
    claim = master.claim(5)
    assert isinstance(claim, Claim)
    with claim as mv:
        assert not mv.readonly and len(mv) == 5
        mv[:] = b"hello"
    assert claim.ended
    assert slave.read() == b"hello"


def _wait_for(condition, seconds=10.0):
    import time

    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


def test_claim_open_across_a_move_is_sent_to_the_new_segment(name):
    master = ESHM(name, role=ESHMRole.MASTER, reconnect_retry_interval_ms=5)
    slave = ESHM(name, role=ESHMRole.SLAVE, reconnect_retry_interval_ms=5, max_reconnect_attempts=0)
    try:
        claim = master.claim(20)
        with claim as mv:
            mv[:5] = b"moved"
            # The claim stays open while the name is removed and the master re-creates it.
            before = (master.get_stats()["reconnect_count"], slave.get_stats()["reconnect_count"])
            os.unlink(f"/dev/shm/eshm_{name}")
            _wait_for(lambda: master.get_stats()["reconnect_count"] > before[0])
            _wait_for(lambda: slave.get_stats()["reconnect_count"] > before[1])
            assert slave.try_read() is None  # the slave's read side is on the new segment now
            claim.commit(5)
        assert slave.read() == b"moved"
    finally:
        slave.close()
        master.close()


def test_claim_a_smaller_new_segment_cannot_take_raises_on_commit(name):
    first = ESHM(name, role=ESHMRole.MASTER)
    slave = ESHM(name, role=ESHMRole.SLAVE, reconnect_retry_interval_ms=5, max_reconnect_attempts=0)
    second = None
    try:
        claim = slave.claim(3000)
        with pytest.raises(eshm.CorruptError, match="could not|cannot take"):
            with claim as mv:
                mv[:] = b"c" * 3000
                moves = slave.get_stats()["reconnect_count"]
                first.close()
                second = ESHM(name, role=ESHMRole.MASTER, s2m_capacity=4096)  # messages up to 2032 bytes
                _wait_for(lambda: slave.get_stats()["reconnect_count"] > moves)
        assert claim.ended
        assert second.try_read() is None
        slave.write(b"next")
        assert second.read() == b"next"
    finally:
        slave.close()
        first.close()
        if second is not None:
            second.close()


def test_claim_commit_shorter(pair):
    master, slave = pair
    claim = master.claim(100)
    with claim as mv:
        mv[:3] = b"abc"
        claim.commit(3)  # sends the first 3 bytes now (and releases mv); the block's end then does nothing
    with pytest.raises(ValueError):
        mv[0]
    assert slave.read() == b"abc"


def test_claim_commit_validates_the_size(pair):
    master, slave = pair
    claim = master.claim(4)
    with pytest.raises(InvalidParameterError):
        claim.commit(5)
    claim.commit(0)
    assert slave.read() == b""


def test_claim_aborts_on_exception(pair):
    master, slave = pair
    with pytest.raises(KeyError):
        with master.claim(3) as mv:
            mv[:] = b"bad"
            raise KeyError("x")
    assert slave.try_read() is None
    master.write(b"good")
    assert slave.read() == b"good"


def test_claim_errors(small_pair):
    master, slave = small_pair
    with pytest.raises(MessageTooLargeError):
        master.claim(master.max_message_size + 1)
    while master.try_write(b"z" * 100):
        pass
    with pytest.raises(TimeoutError):
        master.claim(100, timeout_ms=30)
    while slave.try_read() is not None:
        pass
    with master.claim(2) as mv:
        mv[:] = b"ok"
        with pytest.raises(BufferError):
            master.write(b"nested")
        with pytest.raises(BufferError):
            master.close()
    assert slave.read() == b"ok"


# ---- Handle hygiene ----


def test_unclosed_channel_warns(name):
    ch = ESHM(name, role=ESHMRole.MASTER)
    with pytest.warns(ResourceWarning, match=name):
        del ch
        gc.collect()


def test_closed_channel_does_not_warn(name):
    ch = ESHM(name, role=ESHMRole.MASTER)
    ch.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del ch
        gc.collect()


def test_repr(name):
    with ESHM(name, role=ESHMRole.MASTER) as master:
        r = repr(master)
        assert name in r and "master" in r and "absent" in r and "open" in r
        with ESHM(name, role=ESHMRole.SLAVE) as slave:
            assert "slave" in repr(slave) and "open" in repr(slave)
    assert "closed" in repr(master) and "master" in repr(master)


def test_forked_child_gets_a_clear_error(pair):
    master, slave = pair
    master.write(b"queued")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            errors = []
            for call in (lambda: master.write(b"x"), lambda: slave.read(timeout_ms=0), lambda: slave.read_many(),
                         lambda: slave.recv_view(), lambda: master.claim(1), lambda: master.get_stats()):
                try:
                    call()
                except ForkedChannelError as e:
                    errors.append(isinstance(e, RuntimeError) and "open a new ESHM" in str(e))
            if errors == [True] * 6 and "fork" in repr(master):
                code = 0
            master.close()
            slave.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert slave.read() == b"queued"  # the child took nothing


def test_public_names():
    for n in ("ForkedChannelError", "MessageView", "Claim"):
        assert n in eshm.__all__ and hasattr(eshm, n)
    assert issubclass(ForkedChannelError, RuntimeError)


def test_dropped_views_end_their_message(pair):
    master, slave = pair
    master.write_many([b"1", b"2", b"3"])
    slave.recv_view()  # never entered: dropped at once
    view = slave.recv_view()
    view.__enter__()  # entered, never exited: a cycle (view -> memoryview -> view) for the collector
    del view
    gc.collect()
    assert slave.read() == b"3"
    claim = master.claim(4)
    claim.__enter__()
    del claim
    gc.collect()  # a dropped claim is aborted
    assert slave.try_read() is None
