"""asyncio: read_async, write_async and `async for`, all waiting through one helper thread per event loop.

What a user relies on: a message is delivered exactly once and in order however calls are cancelled or time
out; a pending call ends with a clear error when its channel is closed or its peer is gone; hundreds of
pending calls share one thread; the loop is never blocked.
"""

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

import eshm
from eshm import ChannelClosedError, ESHMTimeoutError, MessageTooLargeError, PeerStaleError
from eshm import _aio


@pytest.fixture
def pairs(pairs):
    """The shared fixture's pairs with a 5 s stale threshold: a loaded machine never makes their peers flap."""

    def make(n=1, **slave_options):
        return pairs(n, master_options={"stale_threshold_ms": 5000}, stale_threshold_ms=5000, **slave_options)

    return make


def helper_threads():
    return [t for t in threading.enumerate() if t.name == "eshm-asyncio"]


@pytest.fixture(autouse=True)
def short_linger(monkeypatch):
    """Helper threads end soon after their last wait, so that each test starts without one."""
    monkeypatch.setattr(_aio, "_LINGER_S", 0.2)
    deadline = time.monotonic() + 5
    while helper_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not helper_threads(), "a helper thread outlived the previous test"


def later(seconds, fn, *args):
    timer = threading.Timer(seconds, fn, args)
    timer.start()
    return timer


def test_a_queued_message_is_returned_without_a_helper_thread(pairs):
    ((m, s),) = pairs()

    async def main():
        m.write(b"queued")
        assert await s.read_async() == b"queued"
        await m.write_async(b"room")  # the ring has room: no wait either
        assert s.try_read() == b"room"
        assert not helper_threads()

    asyncio.run(main())


def test_a_pending_read_gets_the_message_written_later(pairs):
    ((m, s),) = pairs(wait="sleep")  # no polling: the wait goes through the helper at once

    async def main():
        timer = later(0.05, m.write, b"later")
        start = time.monotonic()
        assert await s.read_async(timeout_ms=5000) == b"later"
        assert time.monotonic() - start >= 0.04
        assert len(helper_threads()) == 1
        timer.join()

    asyncio.run(main())


def test_the_loop_keeps_running_while_reads_wait(pairs):
    ((m, s),) = pairs()

    async def main():
        reader = asyncio.ensure_future(s.read_async())
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert ticks == 20 and not reader.done()
        m.write(b"x")
        assert await asyncio.wait_for(reader, 5) == b"x"

    asyncio.run(main())


def test_hundreds_of_pending_reads_share_one_helper_thread(pairs):
    chans = pairs(200, wait="sleep")

    async def main():
        readers = [asyncio.ensure_future(s.read_async(timeout_ms=20000)) for _, s in chans]
        await asyncio.sleep(0.1)
        assert len(helper_threads()) == 1
        assert not any(r.done() for r in readers)
        order = list(range(len(chans)))
        random.Random(7).shuffle(order)
        for i in order:
            chans[i][0].write(f"to {i}".encode())
        got = await asyncio.wait_for(asyncio.gather(*readers), 20)
        assert got == [f"to {i}".encode() for i in range(len(chans))]
        assert len(helper_threads()) == 1

    asyncio.run(main())


def test_a_timed_out_read_raises_timeout_error_and_takes_nothing(pairs):
    ((m, s),) = pairs()

    async def main():
        start = time.monotonic()
        with pytest.raises(ESHMTimeoutError, match="read_async timed out after 50 ms"):
            await s.read_async(timeout_ms=50)
        assert 0.045 <= time.monotonic() - start < 2
        m.write(b"after")
        assert await s.read_async(timeout_ms=1000) == b"after"

    asyncio.run(main())


@pytest.mark.parametrize("wait", ["adaptive", "sleep"])
def test_cancelled_and_timed_out_reads_lose_no_message(pairs, wait):
    """A writer thread sends 2,000 numbered messages at random moments while the reader's calls are cancelled
    or time out at random moments: every message arrives exactly once, in order."""
    ((m, s),) = pairs(wait=wait)
    total = 2000

    got = []

    def writer():
        rng = random.Random(1)
        for i in range(total):
            # Mostly one message at a time, at a random moment (often later than a read polls): so reads wait,
            # and are cut while they wait, also just as the message comes.
            while len(got) < i - rng.choice((0, 0, 0, 3)):
                time.sleep(0.00005)
            time.sleep(rng.random() * 0.001)
            m.write(i.to_bytes(4, "little"), timeout_ms=10000)

    async def main():
        rng = random.Random(2)
        cancelled = timed_out = 0
        thread = threading.Thread(target=writer)
        thread.start()
        while len(got) < total:
            choice = rng.random()
            if choice < 0.3:
                task = asyncio.ensure_future(s.read_async())
                await asyncio.sleep(rng.random() * 0.001)
                task.cancel()
                try:
                    got.append(await task)
                except asyncio.CancelledError:
                    cancelled += 1
            elif choice < 0.5:
                try:
                    got.append(await asyncio.wait_for(s.read_async(), rng.random() * 0.001))
                except asyncio.TimeoutError:
                    timed_out += 1
            else:
                got.append(await s.read_async(timeout_ms=10000))
        thread.join()
        assert [int.from_bytes(g, "little") for g in got] == list(range(total))
        assert s.try_read() is None
        assert cancelled > 20 and timed_out > 10  # the cuts did happen

    asyncio.run(main())


def test_close_ends_pending_reads_and_writes_with_a_clear_error(pairs):
    ((m, s),) = pairs(wait="sleep")

    async def main():
        reader = asyncio.ensure_future(m.read_async())  # nothing comes from the slave
        while m.try_write(b"f" * 1000):
            pass
        writer = asyncio.ensure_future(m.write_async(b"w" * 1000))  # and the slave reads nothing
        await asyncio.sleep(0.05)
        assert not reader.done() and not writer.done()
        start = time.monotonic()
        m.close()
        with pytest.raises(ChannelClosedError, match="was closed while read_async waited"):
            await reader
        with pytest.raises(ChannelClosedError, match="was closed while write_async waited"):
            await writer
        assert time.monotonic() - start < 0.5
        with pytest.raises(ChannelClosedError):
            await m.read_async()

    asyncio.run(main())


def test_a_channel_closed_on_another_thread_wakes_its_awaiter(pairs):
    ((m, s),) = pairs(wait="sleep")

    async def main():
        reader = asyncio.ensure_future(s.read_async())
        await asyncio.sleep(0.05)
        later(0.02, s.close)
        with pytest.raises(ChannelClosedError):
            await asyncio.wait_for(reader, 2)

    asyncio.run(main())


def test_write_async_waits_for_room_and_keeps_the_order_of_its_calls(pairs):
    ((m, s),) = pairs()

    async def main():
        filled = 0
        while m.try_write(b"fill-%04d" % filled):
            filled += 1
        writers = [asyncio.ensure_future(m.write_async(b"next-%d" % i)) for i in range(5)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in writers)
        got = []
        while len(got) < filled + 5:
            got.append(await s.read_async(timeout_ms=5000))
        await asyncio.wait_for(asyncio.gather(*writers), 5)
        assert got == [b"fill-%04d" % i for i in range(filled)] + [b"next-%d" % i for i in range(5)]

    asyncio.run(main())


def test_concurrent_reads_get_the_messages_in_the_order_they_were_called(pairs):
    ((m, s),) = pairs()

    async def main():
        readers = [asyncio.ensure_future(s.read_async(timeout_ms=5000)) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert not any(r.done() for r in readers)
        for i in range(5):
            m.write(b"%d" % i)
        assert await asyncio.wait_for(asyncio.gather(*readers), 5) == [b"%d" % i for i in range(5)]

    asyncio.run(main())


def test_write_async_of_a_message_too_large_fails_at_once(pairs):
    ((m, s),) = pairs()

    async def main():
        with pytest.raises(MessageTooLargeError):
            await m.write_async(b"x" * 100000)
        assert s.try_read() is None

    asyncio.run(main())


def test_async_for_reads_until_the_channel_is_closed(pairs):
    ((m, s),) = pairs()

    async def main():
        async def produce():
            for i in range(100):
                await m.write_async(b"%d" % i)
            while s.next_message_size() is not None:
                await asyncio.sleep(0.001)
            s.close()

        producer = asyncio.ensure_future(produce())
        got = [message async for message in s]
        await producer
        assert got == [b"%d" % i for i in range(100)]

    asyncio.run(main())


def test_a_gone_peer_ends_a_pending_read_as_a_blocking_read_would(pairs):
    ((m1, s1),) = pairs(disconnect_behavior="immediately", wait="sleep")
    ((m2, s2),) = pairs(disconnect_behavior="on_timeout", reconnect_wait_ms=300, wait="sleep")

    async def main():
        immediate = asyncio.ensure_future(s1.read_async())
        on_timeout = asyncio.ensure_future(s2.read_async())
        await asyncio.sleep(0.05)
        start = time.monotonic()
        m1.close()
        m2.close()
        with pytest.raises(PeerStaleError):
            await asyncio.wait_for(immediate, 5)
        assert time.monotonic() - start < 1
        with pytest.raises(PeerStaleError, match="reconnect_wait_ms"):
            await asyncio.wait_for(on_timeout, 5)
        assert 0.25 <= time.monotonic() - start < 3

    asyncio.run(main())


def test_a_reader_blocked_on_another_thread_does_not_stall_the_other_channels(pairs):
    (m1, s1), (m2, s2) = pairs(2, wait="sleep")

    async def main():
        holder = threading.Thread(target=lambda: pytest.raises(ESHMTimeoutError, s1.read, timeout_ms=1000))
        holder.start()
        await asyncio.sleep(0.05)  # s1's read side is that thread's now
        first = asyncio.ensure_future(s1.read_async(timeout_ms=5000))
        second = asyncio.ensure_future(s2.read_async(timeout_ms=5000))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        m2.write(b"to two")
        assert await asyncio.wait_for(second, 5) == b"to two"
        assert time.monotonic() - start < 0.5  # not after the other thread's read ends
        holder.join()
        m1.write(b"to one")
        assert await asyncio.wait_for(first, 5) == b"to one"

    asyncio.run(main())


def test_a_blocking_read_on_another_thread_gets_its_turn_while_a_read_async_waits(pairs):
    """The helper's wait holds the read side while it looks; a blocking read on another thread must not be
    kept out by it until a message happens to come."""
    ((m, s),) = pairs(wait="sleep")
    got = {}

    def blocking_read(key, timeout_ms):
        try:
            got[key] = s.read(timeout_ms=timeout_ms)
        except ESHMTimeoutError as e:
            got[key] = str(e)

    async def main():
        loop = asyncio.get_running_loop()
        pending = asyncio.ensure_future(s.read_async(timeout_ms=10000))
        await asyncio.sleep(0.05)  # the helper waits on s
        # With nothing to read, the thread's read times out waiting for a message, not for the read side.
        await loop.run_in_executor(None, blocking_read, "empty", 200)
        assert "no message arrived" in got["empty"], got
        thread = threading.Thread(target=blocking_read, args=("message", 3000))
        thread.start()
        await asyncio.sleep(0.1)  # the thread's read waits for a message, holding the read side
        m.write(b"first")
        await loop.run_in_executor(None, thread.join)
        assert got["message"] == b"first"
        assert not pending.done()
        m.write(b"second")
        assert await asyncio.wait_for(pending, 5) == b"second"

    asyncio.run(main())


def test_two_event_loops_in_two_threads_each_have_their_helper(pairs):
    (m1, s1), (m2, s2) = pairs(2, wait="sleep")
    results = {}

    def run(key, s):
        results[key] = asyncio.run(s.read_async(timeout_ms=5000))

    threads = [threading.Thread(target=run, args=(k, s)) for k, s in (("one", s1), ("two", s2))]
    for t in threads:
        t.start()
    time.sleep(0.1)
    assert len(helper_threads()) == 2
    m1.write(b"1")
    m2.write(b"2")
    for t in threads:
        t.join()
    assert results == {"one": b"1", "two": b"2"}


def test_the_helper_thread_ends_when_nothing_waits(pairs):
    ((m, s),) = pairs(wait="sleep")

    async def main():
        later(0.02, m.write, b"x")
        assert await s.read_async(timeout_ms=5000) == b"x"
        assert len(helper_threads()) == 1
        await asyncio.sleep(0.6)
        assert not helper_threads()
        later(0.02, m.write, b"y")  # and the next wait starts another
        assert await s.read_async(timeout_ms=5000) == b"y"

    asyncio.run(main())


def test_a_forked_child_waits_with_a_helper_thread_of_its_own(pairs):
    ((m, s),) = pairs(wait="sleep")
    loop = asyncio.new_event_loop()
    try:
        later(0.02, m.write, b"parent")
        assert loop.run_until_complete(s.read_async(timeout_ms=5000)) == b"parent"
        assert len(helper_threads()) == 1  # the loop's helper, which a child does not inherit
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                name = f"pyaio_child_{os.getpid()}"
                cm = eshm.ESHM(name, role="master", wait="sleep")
                cs = eshm.ESHM(name, role="slave", wait="sleep")
                threading.Timer(0.05, cm.write, (b"child",)).start()
                # The same loop object as the parent's: its helper must be a new one, with a thread.
                start = time.monotonic()
                got = loop.run_until_complete(cs.read_async(timeout_ms=3000))
                code = 0 if got == b"child" and time.monotonic() - start < 1.5 else 2  # woken, not timed out
                cs.close()
                cm.close()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        loop.close()


CTRL_C_CHILD = r"""
import asyncio, sys
from eshm import ESHM
name = sys.argv[1]
m = ESHM(name, role="master")
async def main():
    print("waiting", flush=True)
    await m.read_async()
try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted", flush=True)
finally:
    m.close()
"""


def test_ctrl_c_ends_a_pending_read():
    name = f"pyaio_ctrlc_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    child = subprocess.Popen([sys.executable, "-c", CTRL_C_CHILD, name], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert child.stdout.readline().strip() == "waiting"
        time.sleep(0.2)
        start = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=10)
        assert "interrupted" in out
        assert time.monotonic() - start < 2
        assert child.returncode == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not os.path.exists(f"/dev/shm/eshm_{name}")


def test_channels_are_exported_with_their_async_api():
    assert callable(eshm.Channel.read_async) and callable(eshm.Channel.write_async)
    assert hasattr(eshm.Channel, "__aiter__")
