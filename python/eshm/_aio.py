"""asyncio for eshm channels: Channel.read_async, Channel.write_async and `async for message in channel`.

A call first tries without waiting. With nothing to take (or no room), it keeps looking for the channel's
spin + yield budget (50 us by default; none for wait="sleep", no limit for wait="spin"), giving the loop's
other tasks a turn between looks (asyncio.sleep(0)). Then it asks its event loop's helper to watch the
channel and awaits a future.

One helper, and so one thread, per event loop, however many calls wait: the thread owns one eshm.WaitSet.
Between two waits it adds and removes the channels the loop's calls want; when some are ready it stops
watching them (a channel it watches is its to look at; the loop's calls only take what it reported) and
wakes their futures through call_soon_threadsafe. The message itself is always taken on the loop's thread,
by the call that returns it: cancelling a call that waits takes nothing, so it loses nothing. A thread with
nothing to watch for two seconds ends; the next wait starts another.
"""

import asyncio
import os
import threading
import time
import weakref

from eshm import _eshm
from eshm.errors import ChannelClosedError, ESHMError, ESHMRuntimeError, ESHMTimeoutError, ForkedChannelError

_READ = _eshm.READABLE
_WRITE = _eshm.WRITABLE
_CHANGED = _eshm.PEER_CHANGED | _eshm.CLOSED

# An idle helper thread (nothing to watch) ends after this long.
_LINGER_S = 2.0

_helpers = weakref.WeakKeyDictionary()  # event loop -> _Helper
# A forked child has none of the parent's helper threads: forget them (its loops start their own).
os.register_at_fork(after_in_child=_helpers.clear)


def _helper():
    loop = asyncio.get_running_loop()
    helper = _helpers.get(loop)
    if helper is None:
        helper = _helpers[loop] = _Helper(loop)
    return helper


def _wake(fut, events):
    if not fut.done():
        fut.set_result(events)


class _Helper:
    """The waiting of one event loop's calls, by one thread (see the module comment)."""

    def __init__(self, loop):
        self._loop_ref = weakref.ref(loop)  # the loop owns this helper (_helpers), not the other way round
        self._mu = threading.Lock()
        self._wants = {}      # under _mu: channel -> (interest, write_size) the loop's waiting calls need
        self._thread = None   # under _mu: the helper thread, while one runs
        self._set = _eshm.WaitSet()  # used by the helper thread only (wake() excepted)
        # Loop thread only.
        self._waiters = {}    # channel -> ([read futures], [(write future, write size)])
        self._locks = weakref.WeakKeyDictionary()  # channel -> (read lock, write lock): one call waits per side

    # ---- Loop thread ----

    def locks(self, channel):
        locks = self._locks.get(channel)
        if locks is None:
            locks = self._locks[channel] = (asyncio.Lock(), asyncio.Lock())
        return locks

    async def wait(self, channel, interest, write_size, until):
        """Until `channel` may be ready for `interest` (_READ or _WRITE), its peer changed, it was closed, or the
        loop's clock passes `until` (None: no limit). Returns the events reported (0: the time ran out)."""
        loop = self._loop_ref()
        fut = loop.create_future()
        waiters = self._waiters.get(channel)
        if waiters is None:
            waiters = self._waiters[channel] = ([], [])
        if interest == _READ:
            waiters[0].append(fut)
        else:
            waiters[1].append((fut, write_size))
        timer = None if until is None else loop.call_at(until, _wake, fut, 0)
        try:
            self._update(channel, waiters)
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            if interest == _READ:
                waiters[0].remove(fut)
            else:
                waiters[1].remove((fut, write_size))
            if not waiters[0] and not waiters[1]:
                del self._waiters[channel]
            self._update(channel, waiters)

    def _update(self, channel, waiters):
        """Tells the helper what `channel`'s waiting calls need now, starting the thread if none runs."""
        interest = (_READ if waiters[0] else 0) | (_WRITE if waiters[1] else 0)
        want = (interest, max(size for _, size in waiters[1])) if waiters[1] else (interest, 0)
        with self._mu:
            if self._wants.get(channel, (0, 0)) == want:
                return
            if interest:
                self._wants[channel] = want
            else:
                del self._wants[channel]
            if interest and self._thread is None:
                self._thread = threading.Thread(target=self._run, name="eshm-asyncio", daemon=True)
                self._thread.start()
                return
        self._set.wake()  # the thread looks at the wants again

    def _dispatch(self, reports):
        for channel, events in reports:
            waiters = self._waiters.get(channel)
            if waiters is None:
                continue
            if events & (_READ | _CHANGED):
                for fut in waiters[0]:
                    _wake(fut, events)
            if events & (_WRITE | _CHANGED):
                for fut, _ in waiters[1]:
                    _wake(fut, events)

    def _fail(self, error):
        for waiters in list(self._waiters.values()):
            for fut in waiters[0] + [f for f, _ in waiters[1]]:
                if not fut.done():
                    fut.set_exception(ESHMRuntimeError(f"eshm's asyncio helper thread failed: {error!r}"))

    # ---- Helper thread ----

    def _run(self):
        members = {}  # channel -> (interest, write_size), as in self._set
        idle_since = None
        try:
            while True:
                with self._mu:
                    wants = dict(self._wants)
                    if not wants and idle_since is not None and time.monotonic() - idle_since >= _LINGER_S:
                        for channel in members:
                            self._set.remove(channel)
                        self._thread = None
                        return
                reports = []
                for channel, spec in list(members.items()):
                    if wants.get(channel) != spec:
                        self._set.remove(channel)
                        del members[channel]
                for channel, spec in wants.items():
                    if channel in members:
                        continue
                    try:
                        self._set.add(channel, readable=bool(spec[0] & _READ), writable=bool(spec[0] & _WRITE),
                                      write_size=max(spec[1], 1))
                        members[channel] = spec
                    except Exception:
                        # Closed, or never writable with this size: the waiting call looks and says why.
                        reports.append((channel, _eshm.CLOSED if channel.closed else spec[0]))
                if not reports:
                    idle_since = None if wants else (idle_since or time.monotonic())
                    reports = self._set._wait_available(None if wants else _LINGER_S * 1000)
                if not reports:
                    continue
                with self._mu:
                    for channel, events in reports:
                        spec = self._wants.get(channel)
                        if spec is None:
                            continue
                        left = 0 if events & _CHANGED else spec[0] & ~events
                        if left:
                            self._wants[channel] = (left, spec[1] if left & _WRITE else 0)
                        else:
                            del self._wants[channel]
                loop = self._loop_ref()
                if loop is None or loop.is_closed():
                    raise RuntimeError("the event loop is closed")
                loop.call_soon_threadsafe(self._dispatch, reports)
        except BaseException as error:  # noqa: B902 - nothing may leave the waiting calls hanging
            with self._mu:
                for channel in members:
                    try:
                        self._set.remove(channel)
                    except Exception:
                        pass
                self._wants.clear()
                self._thread = None
            loop = self._loop_ref()
            if loop is not None and not loop.is_closed():
                try:
                    loop.call_soon_threadsafe(self._fail, error)
                except RuntimeError:
                    pass


def _deadline(loop, timeout_ms):
    if timeout_ms is None or timeout_ms < 0:
        return None
    return loop.time() + timeout_ms / 1000.0


async def _wait_for(channel, interest, write_size, attempt, timeout_ms, call, nothing):
    """Runs `attempt` (None: not yet) until it gives a result: polls for the channel's budget, then waits
    through the helper. Under the peer's ON_TIMEOUT behaviour a peer that stays away reconnect_wait_ms ends
    it with PeerStaleError, as a blocking call does."""
    helper = _helper()
    loop = helper._loop_ref()
    lock = helper.locks(channel)[0 if interest == _READ else 1]
    async with lock:
        deadline = _deadline(loop, timeout_ms)
        poll_ns = channel._async_poll_ns()
        poll_until = float("inf") if poll_ns < 0 else loop.time() + poll_ns / 1e9
        gone_since = 0
        while True:
            result = attempt()
            if result is not None:
                return result
            gone_since = channel._async_peer_gone(gone_since)
            now = loop.time()
            if deadline is not None and now >= deadline:
                raise ESHMTimeoutError(f"channel '{channel.name}': {call} timed out after {timeout_ms} ms: {nothing}",
                                       int(ESHMError.TIMEOUT))
            if now < poll_until and (deadline is None or now < deadline):
                await asyncio.sleep(0)
                continue
            until = deadline
            if gone_since:
                window_end = gone_since / 1e9 + channel._reconnect_wait_s
                until = window_end if until is None else min(until, window_end)
            events = await helper.wait(channel, interest, write_size, until)
            if events & _eshm.CLOSED and channel.closed:
                raise ChannelClosedError(f"channel '{channel.name}' was closed while {call} waited",
                                         int(ESHMError.CLOSED))


async def read_async(channel, buffer_size=None, timeout_ms=None):
    helper = _helper()
    if not helper.locks(channel)[0].locked():
        message = channel.try_read(buffer_size)  # the common case: a message is queued
        if message is not None:
            return message
    return await _wait_for(channel, _READ, 0, lambda: channel.try_read(buffer_size), timeout_ms, "read_async",
                           "no message arrived")


async def write_async(channel, data, timeout_ms=None):
    if isinstance(data, str):
        data = data.encode("utf-8")
    helper = _helper()
    if not helper.locks(channel)[1].locked() and channel.try_write(data):
        return None
    size = memoryview(data).nbytes
    await _wait_for(channel, _WRITE, size, lambda: True if channel.try_write(data) else None, timeout_ms,
                    "write_async", f"the ring had no room for the {size}-byte message")
    return None


class Messages:
    """`async for message in channel`: read_async() without a timeout until the channel is closed (by this
    process: the loop then ends; any other error is raised)."""

    __slots__ = ("_channel",)

    def __init__(self, channel):
        self._channel = channel

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await read_async(self._channel)
        except ChannelClosedError as error:
            if self._channel.closed and not isinstance(error, ForkedChannelError):
                raise StopAsyncIteration from None
            raise
