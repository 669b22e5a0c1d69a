"""numpy over a channel: arrays made from a claim, arrays of any layout written as messages, and arrays sent
with their dtype and shape (write_array / read_array / recv_array). numpy stays optional: the package
imports and works without it.
"""

import gc
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from eshm import ESHM, ArrayView, BufferTooSmallError, ESHMRole, NotAnArrayError

np = pytest.importorskip("numpy")


@pytest.fixture
def name():
    n = f"pyn_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield n
    try:
        os.unlink(f"/dev/shm/eshm_{n}")
    except FileNotFoundError:
        pass


@pytest.fixture
def pair(name):
    master = ESHM(name, role=ESHMRole.MASTER, m2s_capacity=1 << 22, s2m_capacity=1 << 22)
    slave = ESHM(name, role=ESHMRole.SLAVE)
    yield master, slave
    slave.close()
    master.close()


# ---- An array made from a claim ----


def test_an_array_made_from_a_claim_is_committed_and_the_channel_closes(name):
    master = ESHM(name, role=ESHMRole.MASTER)
    slave = ESHM(name, role=ESHMRole.SLAVE)
    try:
        with master.claim(16) as mv:
            a = np.frombuffer(mv, dtype=np.float32)  # still alive after the block
            a[:] = [1.0, 2.0, 3.0, 4.0]
        assert np.frombuffer(slave.read(timeout_ms=5000), np.float32).tolist() == [1.0, 2.0, 3.0, 4.0]
        master.write(b"the writer is free again")
        assert slave.read(timeout_ms=5000) == b"the writer is free again"
        for _ in range(3):  # the natural loop: each iteration's array outlives its block
            with master.claim(8) as mv:
                b = np.frombuffer(mv, dtype=np.int64)
                b[0] = 42
            assert np.frombuffer(slave.read(timeout_ms=5000), np.int64).tolist() == [42]
    finally:
        slave.close()
        master.close()  # no BufferError: the arrays' memory stays mapped until they go
    assert master.closed
    assert a.tolist() == [1.0, 2.0, 3.0, 4.0]  # readable, never a crash
    assert os.path.exists(f"/dev/shm/eshm_{name}")  # the engine closes with the last array
    del a, b, mv
    gc.collect()
    assert not os.path.exists(f"/dev/shm/eshm_{name}")
    with ESHM(name, role=ESHMRole.MASTER):  # and the role is free
        pass


def test_an_array_from_a_claim_stays_valid_memory_when_the_channel_moves_segment(tmp_path):
    """A slave's array outlives its claim; its master restarts with another ring shape, so the slave follows
    to a new segment and lets the old one go. The array must stay readable (the process must not crash)."""
    n = f"pyn_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    code = textwrap.dedent(f"""
        import time
        import numpy as np
        import eshm
        first = eshm.ESHM({n!r}, role="master")
        slave = eshm.ESHM({n!r}, role="slave", reconnect_retry_interval_ms=5, max_reconnect_attempts=0)
        with slave.claim(4000) as mv:
            a = np.frombuffer(mv, dtype=np.uint8)
            a[:] = 7
        assert first.read(timeout_ms=5000)[:3] == bytes([7, 7, 7])
        moves = slave.get_stats()["reconnect_count"]
        first.close()
        second = eshm.ESHM({n!r}, role="master", s2m_capacity=1 << 16)
        deadline = time.monotonic() + 10
        while slave.get_stats()["reconnect_count"] == moves:
            assert time.monotonic() < deadline, "the slave never followed"
            time.sleep(0.005)
        slave.write(b"after the move")
        assert second.read(timeout_ms=5000) == b"after the move"
        second.write(b"both sides moved")
        assert slave.read(timeout_ms=5000) == b"both sides moved"
        time.sleep(0.3)  # the slave lets the old segment go once both its sides have moved
        assert int(a.sum()) == 7 * 4000  # the old segment's memory, still mapped for the array
        del a, mv
        slave.close()
        second.close()
        print("ok")
    """)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        try:
            os.unlink(f"/dev/shm/eshm_{n}")  # left behind if the child died
        except FileNotFoundError:
            pass
    assert done.returncode == 0 and "ok" in done.stdout, (done.returncode, done.stderr)


def test_an_exception_in_the_block_aborts_the_claim_despite_a_live_array(pair):
    master, slave = pair
    with pytest.raises(KeyError):
        with master.claim(8) as mv:
            a = np.frombuffer(mv, dtype=np.uint8)
            a[:] = 7
            raise KeyError("x")
    assert slave.try_read() is None
    master.write(b"next")
    assert slave.read() == b"next"
    del a


def test_commit_with_a_live_array_sends_the_shortened_message(pair):
    master, slave = pair
    claim = master.claim(64)
    with claim as mv:
        a = np.frombuffer(mv, dtype=np.uint8)
        a[:3] = [1, 2, 3]
        claim.commit(3)
    assert claim.ended
    assert slave.read() == b"\x01\x02\x03"
    del a


# ---- Arrays of any layout through write() ----


def test_write_sends_a_non_contiguous_array_in_c_order(pair):
    master, slave = pair
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for view in (a.T, a[:, ::2], a[::-1], np.asfortranarray(a)):
        master.write(view)
        assert slave.read() == view.tobytes()
    assert master.try_write(a.T)
    assert slave.read() == a.T.tobytes()
    assert master.write_many([a.T, a[:, 1]]) == 2
    assert slave.read_many() == [a.T.tobytes(), a[:, 1].tobytes()]
    master.write(memoryview(b"abcdef")[::2])  # any strided buffer, not only numpy's
    assert slave.read() == b"ace"


def test_read_into_a_numpy_array_and_large_messages(pair):
    master, slave = pair
    big = np.random.default_rng(1).random(200_000)  # 1.6 MB: read() needs no buffer_size
    master.write(big)
    assert np.array_equal(np.frombuffer(slave.read(), np.float64), big)
    master.write(big[:1000])
    out = np.empty(1000)
    assert slave.read_into(out) == 8000 and np.array_equal(out, big[:1000])


# ---- write_array / read_array / recv_array ----


ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.arange(12, dtype=np.float32).reshape(3, 4).T,  # Fortran order
    np.arange(24, dtype=np.int16).reshape(2, 3, 4)[:, ::2, 1:],  # strided
    np.float64(3.5) * np.ones(()),  # 0-d
    np.zeros((0, 5), dtype=np.uint8),  # empty
    np.array([True, False]),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
    np.array(["a", "bcd"], dtype="U3"),
    np.array([b"xy", b"z"], dtype="S2"),
    np.array(["2024-01-01T00:00:00"], dtype="datetime64[ns]"),
    np.arange(5, dtype=">i4"),  # big-endian stays big-endian
    np.array([(1, 2.5, [1, 2, 3]), (4, 5.5, [6, 7, 8])], dtype=[("id", "<i4"), ("x", "<f8"), ("v", "<u2", (3,))]),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_write_array_and_read_array_keep_dtype_and_shape(pair, array):
    master, slave = pair
    master.write_array(array)
    got = slave.read_array(timeout_ms=5000)
    assert got.dtype == array.dtype and got.shape == array.shape
    assert np.array_equal(got, array)
    assert got.flags.writeable and got.flags.c_contiguous and got.flags.owndata
    master.write_array(array)
    with slave.recv_array(timeout_ms=5000) as view:
        assert view.dtype == array.dtype and view.shape == array.shape and np.array_equal(view, array)
        assert not view.flags.writeable
    assert slave.try_read() is None


def test_write_array_accepts_lists_and_scalars(pair):
    master, slave = pair
    master.write_array([[1, 2], [3, 4]])
    assert slave.read_array().tolist() == [[1, 2], [3, 4]]
    master.write_array(np.float32(2.5))
    got = slave.read_array()
    assert got.shape == () and got.dtype == np.float32 and got == 2.5


def test_arrays_of_python_objects_are_refused(pair):
    master, slave = pair
    with pytest.raises(TypeError, match="Python objects"):
        master.write_array(np.array([object(), 1], dtype=object))
    with pytest.raises(TypeError):
        master.write_array(np.zeros(2, dtype=[("a", "i4"), ("b", "O")]))
    assert slave.try_read() is None


def test_recv_array_is_in_place_and_released_at_the_end_of_the_block(pair):
    master, slave = pair
    big = np.arange(256 * 1024, dtype=np.float32)  # 1 MiB
    for i in range(3):
        master.write_array(big + i)
    for i in range(3):  # the natural loop: the previous iteration's variable does not block the next
        with slave.recv_array() as a:
            assert a[0] == i and a.sum() == (big + i).sum()
    assert slave.try_read() is None
    view = master.write_array(big) or slave.recv_array()
    assert isinstance(view, ArrayView) and not view.ended
    view.release()
    assert view.ended and slave.try_read() is None


def test_recv_array_kept_elsewhere_pins_the_message_until_it_goes(pair):
    master, slave = pair
    master.write_array(np.arange(4))
    master.write(b"after")
    with pytest.raises(BufferError):
        with slave.recv_array() as a:
            kept = a[1:]  # a view: it would outlive the message
    assert kept.tolist() == [1, 2, 3]  # still valid: the message stays in the ring
    with pytest.raises(BufferError):
        slave.close()
    with pytest.raises(BufferError):
        slave.read()  # this side's reads are refused while it is pinned
    del kept, a
    gc.collect()
    assert slave.read() == b"after"
    for keep in (lambda a: [a], lambda a: a.T, lambda a: a.reshape(2, 2), lambda a: np.asarray(a)):
        master.write_array(np.arange(4))
        with pytest.raises(BufferError):
            with slave.recv_array() as a:
                kept = keep(a)
        del kept, a
        gc.collect()
    master.write_array(np.arange(4))
    with slave.recv_array() as a:
        kept = a.copy()  # a copy is the way to keep it
        total = int((a * 2).sum())  # so is anything computed from it
    assert kept.tolist() == [0, 1, 2, 3] and total == 12
    assert slave.try_read() is None


def test_a_message_that_is_not_an_array_stays_queued(pair):
    master, slave = pair
    for message in (b"plain bytes", b"ENDA" + b"\0" * 30, b""):
        master.write(message)
        with pytest.raises(NotAnArrayError) as info:
            slave.read_array()
        assert isinstance(info.value, ValueError)
        with pytest.raises(NotAnArrayError):
            slave.recv_array()
        assert slave.read() == message


def test_read_array_timeout_and_buffer_limits(pair):
    master, slave = pair
    with pytest.raises(TimeoutError):
        slave.read_array(timeout_ms=20)
    with pytest.raises(TimeoutError):
        slave.recv_array(timeout_ms=0)
    master.write_array(np.zeros(2000))
    with pytest.raises(BufferTooSmallError):
        slave.read(buffer_size=100)  # an array message is a message like any other
    assert slave.read_array().shape == (2000,)


def test_arrays_between_two_processes(name):
    peer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import numpy as np
        from eshm import ESHM, ESHMRole
        with ESHM({name!r}, role=ESHMRole.SLAVE) as ch:
            for _ in range(3):
                a = ch.read_array(timeout_ms=10000)
                ch.write_array(a.T * 2)
    """)], stderr=subprocess.PIPE, text=True)
    try:
        with ESHM(name, role=ESHMRole.MASTER, m2s_capacity=1 << 22, s2m_capacity=1 << 22) as ch:
            for shape in ((3, 4), (512, 512), (2, 3, 4)):
                a = np.random.default_rng(0).random(shape).astype(np.float32)
                ch.write_array(a)
                got = ch.read_array(timeout_ms=10000)
                assert got.shape == a.T.shape and np.array_equal(got, a.T * 2)
        assert peer.wait(30) == 0, peer.stderr.read()
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()


def test_numpy_is_optional(tmp_path):
    """Without numpy the package imports and moves bytes; the array calls say they need numpy."""
    n = f"pyn_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    code = textwrap.dedent(f"""
        import sys
        sys.modules["numpy"] = None  # as if numpy were not installed
        import eshm
        assert "numpy" not in [m for m in sys.modules if sys.modules[m] is not None]
        with eshm.ESHM({n!r}, role="master") as m, eshm.ESHM({n!r}, role="slave") as s:
            m.write(b"bytes")
            assert s.read() == b"bytes"
            try:
                m.write_array([1, 2])
            except ImportError as e:
                assert "numpy" in str(e), e
            else:
                raise AssertionError("write_array without numpy")
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
