# Part of _eshm.pyx (included there): the Channel class, one endpoint owning an eshm::Channel.

cdef class Channel:
    """One endpoint (master or slave) of a named eshm channel. See the package ``eshm`` for the API."""

    cdef unique_ptr[CChannel] _ch
    cdef PyThread_type_lock _rlock
    cdef PyThread_type_lock _wlock
    cdef long _rowner          # thread ident holding _rlock, 0 if none
    cdef long _wowner
    cdef bint _closing
    cdef bint _close_pending   # close() was called by a thread in the middle of a call (a signal handler)
    cdef int _role
    cdef int _disconnect
    cdef int64_t _reconnect_wait_ns
    cdef bint _disowned        # inherited through fork(): the parent's channel, not this process's
    cdef bint _spin            # opened with wait="spin"
    cdef int64_t _poll_ns      # the wait strategy's spin + yield budget (-1: spins without limit)
    # The zero-copy view in progress on each side (a borrowed pointer to a _RingBuffer, which holds a reference
    # to this channel and clears the pointer when it ends), and the thread that made it. While one is in
    # progress its side's lock stays taken.
    cdef void* _rview
    cdef void* _wview
    cdef long _rview_thread
    cdef long _wview_thread
    cdef readonly str name
    cdef long _owner_pid
    # Buffers from zero-copy views that ended while exported (a numpy array made from a claim that was
    # committed): the engine keeps its memory mapped until the last is gone, so close() leaves the engine's
    # Close() to _detached_released.
    cdef int _detached
    cdef bint _close_deferred
    # The WaitSets this channel is in: close() wakes their waits at once (they let go of its sides).
    cdef list _sets
    cdef int _lock_waiters     # threads waiting in _acquire for a side lock
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._role = -1
        self._rlock = PyThread_allocate_lock()
        self._wlock = PyThread_allocate_lock()
        self._sets = []
        if self._rlock == NULL or self._wlock == NULL:
            raise MemoryError()

    def __init__(self, shm_name, role=ROLE_AUTO, disconnect_behavior=DISCONNECT_ON_TIMEOUT,
                 stale_threshold_ms=100, reconnect_wait_ms=5000, reconnect_retry_interval_ms=100,
                 max_reconnect_attempts=50, bint auto_cleanup=True, bint use_threads=True, *,
                 heartbeat_interval_ms=0, m2s_capacity=1 << 20, s2m_capacity=1 << 20,
                 max_message_bytes=0, wait="adaptive", mode=0o600, bint allow_other_owner=False):
        if self._ch.get() != NULL:
            raise RuntimeError("the channel is already open")
        if not isinstance(shm_name, str):
            raise TypeError(f"shm_name must be a str, not {type(shm_name).__name__}")
        cdef int crole = _enum_arg(role, "role", ROLE_NAMES)
        cdef int cdisconnect = _enum_arg(disconnect_behavior, "disconnect_behavior", DISCONNECT_NAMES)
        if not isinstance(wait, str) or wait not in WAIT_STRATEGIES:
            raise _errors.InvalidParameterError(
                f"wait is {wait!r}; use 'adaptive', 'spin' or 'sleep'", E_INVALID_PARAM)
        ints = {}
        for pname, pvalue in (("stale_threshold_ms", stale_threshold_ms), ("reconnect_wait_ms", reconnect_wait_ms),
                              ("reconnect_retry_interval_ms", reconnect_retry_interval_ms),
                              ("max_reconnect_attempts", max_reconnect_attempts),
                              ("heartbeat_interval_ms", heartbeat_interval_ms)):
            ints[pname] = _int_arg(pvalue, pname)
            if not (-2**31 <= ints[pname] < 2**31):
                raise _errors.InvalidParameterError(f"{pname} is {ints[pname]}: out of range", E_INVALID_PARAM)
        for pname, pvalue in (("m2s_capacity", m2s_capacity), ("s2m_capacity", s2m_capacity),
                              ("max_message_bytes", max_message_bytes)):
            ints[pname] = _int_arg(pvalue, pname)
            if not (0 <= ints[pname] < 2**64):
                raise _errors.InvalidParameterError(f"{pname} is {ints[pname]}; it must not be negative",
                                                    E_INVALID_PARAM)
        cmode = _int_arg(mode, "mode")
        if not (0 <= cmode <= 0o777) or (cmode & 0o600) != 0o600:
            raise _errors.InvalidParameterError(
                f"mode is {cmode:#o}; use permission bits only (at most 0o777) including the owner's read and "
                f"write (0o600): 0o600 for this user alone, 0o660 to share with a group", E_INVALID_PARAM)
        cdef string cname = shm_name.encode("utf-8")
        cdef CChannelOptions options
        SetEnums(&options, crole, cdisconnect)
        _set_wait(&options, wait)
        self._spin = wait == "spin"
        self._poll_ns = options.wait.spin_ns + options.wait.yield_ns if not self._spin else -1
        options.stale_threshold_ms = ints["stale_threshold_ms"]
        options.heartbeat_interval_ms = ints["heartbeat_interval_ms"]
        options.reconnect_wait_ms = ints["reconnect_wait_ms"]
        options.reconnect_retry_interval_ms = ints["reconnect_retry_interval_ms"]
        options.max_reconnect_attempts = ints["max_reconnect_attempts"]
        options.auto_cleanup = auto_cleanup
        options.use_threads = use_threads
        options.m2s_capacity = ints["m2s_capacity"]
        options.s2m_capacity = ints["s2m_capacity"]
        options.max_message_bytes = ints["max_message_bytes"]
        options.mode = cmode
        options.allow_other_owner = allow_other_owner
        cdef CStatusOr[unique_ptr[CChannel]] opened
        # A slave may wait here for its master (max_reconnect_attempts x reconnect_retry_interval_ms).
        with nogil:
            opened = Open(cname, options)
        if not opened.ok() and PyErr_Occurred() != NULL:
            _raise_pending()  # a signal handler raised while the open waited (Ctrl-C: KeyboardInterrupt)
        check_status(opened.status(), OP_OPEN, crole)
        self._ch = move(opened.value())
        self.name = shm_name
        self._role = RoleOf(self._ch.get()[0])
        self._disconnect = cdisconnect
        self._reconnect_wait_ns = <int64_t>ints["reconnect_wait_ms"] * 1000000
        self._closing = False
        self._close_pending = False
        self._owner_pid = _os.getpid()
        _open_channels.add(self)

    cdef void _disown(self):
        """In a forked child: forget the parent's channel without closing it.

        The child has no monitor thread and shares the parent's role lock; closing would release the parent's
        role (and remove its segment name). The object stays closed in the child; open a new channel there.
        """
        self._ch.release()  # leaked on purpose: destroying it would join a thread that only the parent has
        self._disowned = True
        self._closing = True

    def __del__(self):
        # Garbage collected while open (like an unclosed file): say so; __dealloc__ then closes it.
        if self._ch.get() != NULL and not self._closing and not self._disowned:
            try:
                _warnings.warn(f"unclosed {self!r}: call close() or use 'with'", ResourceWarning, source=self)
            except Exception:
                pass  # interpreter shutdown

    def __dealloc__(self):
        # No call can be in flight: each holds a reference to self.
        if self._ch.get() != NULL:
            with nogil:
                self._ch.get().Close()
            self._ch.reset()
        if self._rlock != NULL:
            PyThread_free_lock(self._rlock)
        if self._wlock != NULL:
            PyThread_free_lock(self._wlock)

    # ---- Locking and lifecycle ----

    cdef CChannel* _open_channel(self) except NULL:
        if self._disowned:
            raise _errors.ForkedChannelError(
                f"channel '{self.name}' was opened by process {self._owner_pid} and inherited through fork(); it "
                "cannot be used in this process: open a new ESHM in the child", E_CLOSED)
        if self._ch.get() == NULL or self._closing:
            raise _errors.ChannelClosedError(f"channel '{self.name}' is closed", E_CLOSED)
        return self._ch.get()

    cdef int _acquire(self, PyThread_type_lock lock, int64_t deadline_ns) except -1:
        """Takes a side lock, waiting (GIL released, in slices, interruptible) until deadline_ns."""
        cdef int got = PyThread_acquire_lock(lock, NOWAIT_LOCK)
        cdef int64_t now, wait_ns
        if got:
            return 0
        # A WaitSet's wait (eshm.asyncio's helper) may hold it: it lets go at once and, while we wait, leaves
        # this channel to us (WaitSet._wait_available).
        self._lock_waiters += 1
        try:
            for wait_set in self._sets:
                (<WaitSet>wait_set)._set.get().Wake()
            while not got:
                now = NowNs()
                if now >= deadline_ns:
                    raise _errors.ESHMTimeoutError(
                        f"channel '{self.name}': another thread kept the channel busy until the deadline", E_TIMEOUT)
                wait_ns = min(SLICE_NS, deadline_ns - now)
                with nogil:
                    got = PyThread_acquire_lock_timed(lock, wait_ns // 1000, 0)
                if not got:
                    PyErr_CheckSignals()
        finally:
            self._lock_waiters -= 1
        return 0

    cdef int _no_view_here(self, bint reader) except -1:
        """Refuses a call on a side whose zero-copy view this very thread still holds (it would wait for itself)."""
        cdef long me = PyThread_get_thread_ident()
        if reader and self._rview != NULL and self._rview_thread == me:
            raise BufferError(f"channel '{self.name}': this thread holds a message from recv_view(); leave its "
                              "with block (or call its release()) before reading again")
        if not reader and self._wview != NULL and self._wview_thread == me:
            raise BufferError(f"channel '{self.name}': this thread holds a claim(); leave its with block (or call "
                              "its commit() or abort()) before writing again")
        return 0

    cdef int _try_take_reader(self) except -1:
        """Takes the reader lock if it is free: 1 if taken, 0 if another thread holds it."""
        self._open_channel()
        self._no_view_here(True)
        if not PyThread_acquire_lock(self._rlock, NOWAIT_LOCK):
            return 0
        self._rowner = PyThread_get_thread_ident()
        return 1

    cdef int _try_take_writer(self) except -1:
        self._open_channel()
        self._no_view_here(False)
        if not PyThread_acquire_lock(self._wlock, NOWAIT_LOCK):
            return 0
        self._wowner = PyThread_get_thread_ident()
        return 1

    cdef int _take_reader(self, int64_t deadline_ns) except -1:
        self._open_channel()
        self._no_view_here(True)
        self._acquire(self._rlock, deadline_ns)
        self._rowner = PyThread_get_thread_ident()
        return 0

    cdef void _drop_reader(self):
        self._rowner = 0
        PyThread_release_lock(self._rlock)

    cdef int _take_writer(self, int64_t deadline_ns) except -1:
        self._open_channel()
        self._no_view_here(False)
        self._acquire(self._wlock, deadline_ns)
        self._wowner = PyThread_get_thread_ident()
        return 0

    cdef void _drop_writer(self):
        self._wowner = 0
        PyThread_release_lock(self._wlock)

    cdef int _after_call(self) except -1:
        """Runs after every call: completes a close() that a signal handler asked for during the call."""
        if self._close_pending and self._rowner == 0 and self._wowner == 0:
            self._close_pending = False
            self.close()
        return 0

    def close(self):
        """Releases the role; with auto_cleanup a master also removes the channel name. Idempotent."""
        if self._ch.get() == NULL:
            return
        # Like mmap.close(): refuse while a buffer still points into the rings (they are unmapped below).
        cdef int exports = 0
        if self._rview != NULL:
            exports += (<_RingBuffer>self._rview)._exports
        if self._wview != NULL:
            exports += (<_RingBuffer>self._wview)._exports
        if exports:
            raise BufferError(f"cannot close channel '{self.name}': {exports} exported buffer(s) still point into "
                              "it (a recv_view() or claim() memoryview); release them first")
        # Views with no buffer exported end here: a message view is released, a claim aborted.
        if self._rview != NULL:
            (<_RingBuffer>self._rview)._finish(False)
        if self._wview != NULL:
            (<_RingBuffer>self._wview)._finish(False)
        self._closing = True
        # Calls waiting in the engine, on any thread, return at once (Cancelled: ChannelClosedError).
        self._ch.get().Shutdown()
        cdef long me = PyThread_get_thread_ident()
        if self._rowner == me or self._wowner == me:
            # Called from a signal handler interrupting a read or write on this thread: that call raises
            # ChannelClosedError as it returns, and closes on its way out.
            self._close_pending = True
            return
        # Calls in flight on other threads let go of their lock as they return; a WaitSet's wait at once.
        for wait_set in list(self._sets):
            (<WaitSet>wait_set)._set.get().Wake()
        self._acquire(self._rlock, INT64_MAX)
        try:
            self._acquire(self._wlock, INT64_MAX)
        except BaseException:
            PyThread_release_lock(self._rlock)
            raise
        try:
            if self._detached > 0:
                # Buffers of ended views still point into the shared memory: unmapping it now would leave them
                # dangling. The engine closes (role released, name removed) when the last of them goes.
                self._close_deferred = True
            elif self._ch.get() != NULL:
                self._ch.get().Close()  # with the GIL: no stats() or role() call can race with it
                self._ch.reset()
        finally:
            PyThread_release_lock(self._wlock)
            PyThread_release_lock(self._rlock)

    cdef void _detached_released(self):
        """The last buffer of an ended view is gone: finishes a close() that waited for it."""
        self._detached -= 1
        if self._detached == 0 and self._close_deferred and self._ch.get() != NULL:
            self._close_deferred = False
            self._ch.get().Close()
            self._ch.reset()

    def __reduce__(self):
        raise TypeError(
            f"cannot pickle {type(self).__name__} {self.name!r}: a channel is this process's endpoint (it holds "
            "the role's lock and maps the shared memory), so it cannot be copied or sent to another process; "
            "send the channel's name and open an ESHM there")

    @property
    def closed(self):
        """True once close() was called."""
        return self._ch.get() == NULL or self._closing

    def __enter__(self):
        self._open_channel()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    # ---- Blocking-wait helpers ----

    cdef int _raise_stale(self, CChannel* ch) except -1:
        """The error the C++ channel gives when the peer does not come back within reconnect_wait_ms."""
        cdef CStatus gone = StatusOfResult(ch[0], R_PEER_GONE)
        message = MessageOf(gone).decode("utf-8", "replace")
        raise _errors.error_for_code(
            E_SLAVE_STALE if self._role == ROLE_MASTER else E_MASTER_STALE,
            f"{message}; it did not come back within reconnect_wait_ms ({self._reconnect_wait_ns // 1000000} ms)")

    cdef bint _peer_went_away(self, CChannel* ch):
        """The peer was attached and is now dead or unresponsive (not merely absent: never attached yet)."""
        cdef int state = PeerStateOf(ch[0])
        return state != PEER_ALIVE and state != PEER_ABSENT

    cdef int _blocked_failed(self, const CStatus& status, COperation op) except -1:
        """Raises for a blocking call that failed in the engine: the exception a signal handler raised in the
        channel's wait check (Ctrl-C: KeyboardInterrupt), ChannelClosedError if close() ended the wait, or
        the status's own error (the reconnect window, timeouts and peer loss are the engine's)."""
        if PyErr_Occurred() != NULL:
            return _raise_pending()
        if status.raw_code() == S_CANCELLED and self._closing:
            raise _errors.ChannelClosedError(f"channel '{self.name}' was closed during the call", E_CLOSED)
        return check_status(status, op, self._role)

    cdef object _too_large(self, CChannel* ch, size_t size, str what, str tail=""):
        cdef size_t limit = ch.max_message_bytes()
        err = _errors.MessageTooLargeError(
            f"channel '{self.name}': {what} is {size} bytes, more than the channel's maximum message size of "
            f"{limit} bytes (set by the master: max_message_bytes, or half a ring){tail}", E_MESSAGE_TOO_LARGE)
        err.message_size = size
        err.max_message_size = limit
        return err

    cdef object _buffer_too_small(self, CChannel* ch, size_t buffer_size):
        cdef int64_t size = NextMessageSize(ch)
        err = _errors.BufferTooSmallError(
            f"channel '{self.name}': the next message is {size} bytes but buffer_size is {buffer_size}; "
            f"the message stays in the channel: read it with buffer_size >= {size}", E_BUFFER_TOO_SMALL)
        err.message_size = size
        return err

    # ---- Read side ----

    cdef object _take_peeked(self, CChannel* ch, const char* data, size_t size, size_t limit):
        """The peeked message as bytes, released from the ring; BufferTooSmallError (the message stays) if it is
        larger than `limit`. One copy, from the ring into the bytes object."""
        if size > limit:
            raise self._buffer_too_small(ch, limit)
        message = PyBytes_FromStringAndSize(data, size)  # on MemoryError the message stays queued
        ch.Release()
        return message

    def read(self, buffer_size=None, timeout_ms=None):
        """Returns the next message (bytes), whatever its size, waiting up to timeout_ms (None: 1000 ms;
        negative: forever).

        buffer_size (None: no limit) is the largest message accepted: a larger one raises BufferTooSmallError
        and stays queued. Raises TimeoutError (ESHMTimeoutError) if none arrives in time, PeerStaleError if
        the peer is gone and does not come back as the disconnect behaviour allows.
        """
        cdef size_t limit = _limit(buffer_size)
        cdef double ms = _timeout_ms(timeout_ms)
        cdef int64_t deadline = 0  # computed when the call first has to wait
        cdef CChannel* ch
        cdef const char* data = NULL
        cdef size_t size = 0
        cdef int r
        if not self._try_take_reader():
            deadline = _deadline_after(ms)
            self._take_reader(deadline)
        try:
            ch = self._open_channel()
            # Fast path, with the GIL: a message is already queued (or comes within a spinning read's budget).
            r = IoResultCode(TryPeek(ch, &data, &size))
            if r == R_WOULD_BLOCK and self._spin and ms != 0:
                r = IoResultCode(SpinTryPeek(ch, &data, &size, _spin_budget_ns(ms)))
            if r != R_OK:
                if r != R_WOULD_BLOCK and r != R_PEER_GONE:
                    check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
                if deadline == 0:
                    deadline = _deadline_after(ms)
                self._wait_peek_slow(ch, deadline, &data, &size)
            return self._take_peeked(ch, data, size, limit)
        finally:
            self._drop_reader()
            self._after_call()

    def try_read(self, buffer_size=None):
        """Returns the next message (bytes), whatever its size, if one is queued, else None. Never waits.

        buffer_size (None: no limit) is the largest message accepted: a larger one raises BufferTooSmallError
        and stays queued.
        """
        cdef size_t limit = _limit(buffer_size)
        cdef CChannel* ch = self._open_channel()
        cdef const char* data = NULL
        cdef size_t size = 0
        cdef int r
        self._no_view_here(True)
        if not PyThread_acquire_lock(self._rlock, NOWAIT_LOCK):
            return None  # another thread is reading: whatever arrives is its
        self._rowner = PyThread_get_thread_ident()
        try:
            r = IoResultCode(TryPeek(ch, &data, &size))
            if r == R_OK:
                return self._take_peeked(ch, data, size, limit)
            if r == R_WOULD_BLOCK:
                return None
            check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
        finally:
            self._drop_reader()
            self._after_call()

    def next_message_size(self):
        """The size in bytes of the next queued message, or None if none is queued. Never waits."""
        cdef CChannel* ch = self._open_channel()
        cdef int64_t size
        self._no_view_here(True)
        if not PyThread_acquire_lock(self._rlock, NOWAIT_LOCK):
            return None
        try:
            size = NextMessageSize(ch)
        finally:
            PyThread_release_lock(self._rlock)
        return None if size < 0 else size

    # ---- asyncio (eshm/_aio.py waits; these are its views of the channel) ----

    def read_async(self, buffer_size=None, timeout_ms=None):
        """Coroutine: the next message (bytes), as read(), awaited without blocking the event loop.

        timeout_ms: None (the default, unlike read()) waits without limit, as asyncio's own reads do; a
        number raises TimeoutError after that long. Cancelling it (task.cancel(), asyncio.timeout) takes no
        message: a message is taken only by the call that returns it. close() ends it with
        ChannelClosedError. All waiting reads and writes of one event loop share one helper thread.
        """
        return _aio_module().read_async(self, buffer_size, timeout_ms)

    def write_async(self, data, timeout_ms=None):
        """Coroutine: sends one message, as write(), awaiting room in the ring without blocking the event loop.

        timeout_ms: None (the default) waits without limit. Cancelled, it has sent nothing; concurrent
        write_async calls on one channel send in the order they were called.
        """
        return _aio_module().write_async(self, data, timeout_ms)

    def __aiter__(self):
        """`async for message in channel`: read_async() without a timeout, until this channel is closed."""
        return _aio_module().Messages(self)

    def _async_poll_ns(self):
        """How long a read_async/write_async polls on the event loop (yielding to other tasks) before it
        waits through the helper thread: the wait strategy's spin + yield budget (none for wait="sleep")."""
        return self._poll_ns

    def _async_peer_gone(self, int64_t gone_since_ns):
        """For a waiting read_async/write_async, as a blocking call checks between slices: under ON_TIMEOUT,
        when the peer went away (0 while it has not), or PeerStaleError once it stayed away reconnect_wait_ms."""
        cdef CChannel* ch = self._open_channel()
        if self._disconnect != DISCONNECT_ON_TIMEOUT or not self._peer_went_away(ch):
            return 0
        if gone_since_ns == 0:
            return NowNs()
        if NowNs() - gone_since_ns >= self._reconnect_wait_ns:
            self._raise_stale(ch)
        return gone_since_ns

    @property
    def _reconnect_wait_s(self):
        return self._reconnect_wait_ns / 1e9

    # ---- Write side ----

    def write(self, data, timeout_ms=None):
        """Sends one message: a bytes-like object (a non-contiguous one, such as a transposed numpy array, is
        sent in C order, as its tobytes() would give), or a str sent as UTF-8.

        Waits up to timeout_ms (None: 1000 ms; negative: forever) for room in the ring (backpressure:
        nothing is ever overwritten) and, per the disconnect behaviour, for the peer. Raises TimeoutError,
        MessageTooLargeError, or PeerStaleError.
        """
        cdef double ms = _timeout_ms(timeout_ms)
        cdef int64_t deadline = 0  # computed when the call first has to wait
        cdef Py_buffer view
        cdef CChannel* ch
        cdef int r
        cdef CStatus status
        _message_buffer(data, &view)
        try:
            if not self._try_take_writer():
                deadline = _deadline_after(ms)
                self._take_writer(deadline)
            try:
                ch = self._open_channel()
                r = IoResultCode(TryWrite(ch, <const char*>view.buf, view.len))
                if r == R_OK:
                    return None
                if r == R_TOO_LARGE:
                    raise self._too_large(ch, view.len, "the message")
                if r != R_WOULD_BLOCK:
                    check_status(StatusOfResult(ch[0], r), OP_WRITE, self._role)
                if deadline == 0:
                    deadline = _deadline_after(ms)
                with nogil:
                    status = Write(ch, <const char*>view.buf, view.len, deadline)
                if not status.ok():
                    self._blocked_failed(status, OP_WRITE)
                return None
            finally:
                self._drop_writer()
                self._after_call()
        finally:
            PyBuffer_Release(&view)

    def try_write(self, data):
        """Sends one message (as write()) if the ring has room now: True if sent, False if the ring is full.
        Never waits."""
        cdef Py_buffer view
        cdef CChannel* ch = self._open_channel()
        cdef int r
        self._no_view_here(False)
        _message_buffer(data, &view)
        try:
            if not PyThread_acquire_lock(self._wlock, NOWAIT_LOCK):
                return False  # another thread is writing (and may be waiting for room)
            self._wowner = PyThread_get_thread_ident()
            try:
                r = IoResultCode(TryWrite(ch, <const char*>view.buf, view.len))
                if r == R_OK:
                    return True
                if r == R_WOULD_BLOCK:
                    return False
                if r == R_TOO_LARGE:
                    raise self._too_large(ch, view.len, "the message")
                check_status(StatusOfResult(ch[0], r), OP_WRITE, self._role)
            finally:
                self._drop_writer()
                self._after_call()
        finally:
            PyBuffer_Release(&view)

    # ---- Batches and caller-owned buffers ----

    cdef int _wait_peek(self, CChannel* ch, int64_t deadline, const char** data, size_t* size) except -1:
        """Peeks at the next message, waiting (GIL released) until deadline. Holds the reader lock."""
        cdef int r = IoResultCode(TryPeek(ch, data, size))
        if r == R_OK:
            return 0
        if r != R_WOULD_BLOCK and r != R_PEER_GONE:
            check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
        return self._wait_peek_slow(ch, deadline, data, size)

    cdef int _wait_peek_slow(self, CChannel* ch, int64_t deadline, const char** data, size_t* size) except -1:
        """The waiting part of _wait_peek, after a TryPeek found nothing."""
        cdef CStatus status
        with nogil:
            status = Peek(ch, deadline, data, size)
        if not status.ok():
            self._blocked_failed(status, OP_READ)
        return 0

    def read_many(self, Py_ssize_t max_messages=DEFAULT_MAX_MESSAGES, timeout_ms=None, buffer_size=None):
        """Returns a list of up to max_messages messages (bytes): waits up to timeout_ms for the first (None:
        1000 ms; negative: forever), then takes whatever else is queued without waiting.

        buffer_size (None: no limit) is the largest message accepted: a larger first message raises
        BufferTooSmallError, a larger later one ends the list; either stays queued. Raises TimeoutError if
        nothing arrives in time.
        """
        if max_messages < 1:
            raise _errors.InvalidParameterError(f"max_messages is {max_messages}; it must be at least 1",
                                                E_INVALID_PARAM)
        cdef size_t limit = <size_t>-1
        if buffer_size is not None:
            if buffer_size < 0:
                raise _errors.InvalidParameterError(f"buffer_size is {buffer_size}; it must not be negative",
                                                    E_INVALID_PARAM)
            limit = buffer_size
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef CChannel* ch
        cdef const char* data = NULL
        cdef size_t size = 0
        cdef list out = []
        cdef int released
        self._take_reader(deadline)
        try:
            ch = self._open_channel()
            self._wait_peek(ch, deadline, &data, &size)
            while True:
                if size > limit:
                    if not out:
                        raise self._buffer_too_small(ch, limit)
                    break
                out.append(PyBytes_FromStringAndSize(data, size))
                # After the copy: whether it is whole (a truncation of the segment may have zeroed it).
                released = IoResultCode(ch.Release())
                if released != R_OK:
                    out.pop()
                    if not out:
                        check_status(StatusOfResult(ch[0], released), OP_READ, self._role)
                    break  # the next call reports it
                if len(out) >= max_messages or IoResultCode(TryPeek(ch, &data, &size)) != R_OK:
                    break
            return out
        finally:
            self._drop_reader()
            self._after_call()

    def read_into(self, buffer, timeout_ms=None):
        """Reads the next message into `buffer` (any writable, C-contiguous buffer: bytearray, memoryview,
        array, numpy array) and returns its size in bytes. Waits like read(); a message larger than the buffer
        raises BufferTooSmallError and stays queued.
        """
        cdef double ms = _timeout_ms(timeout_ms)
        cdef int64_t deadline = 0  # computed when the call first has to wait
        cdef Py_buffer view
        cdef CChannel* ch
        cdef size_t n = 0
        cdef int r
        cdef CStatusOr[size_t] got
        PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
        try:
            if not self._try_take_reader():
                deadline = _deadline_after(ms)
                self._take_reader(deadline)
            try:
                ch = self._open_channel()
                r = IoResultCode(TryRead(ch, <char*>view.buf, view.len, &n))
                if r == R_WOULD_BLOCK and self._spin and ms != 0:
                    r = IoResultCode(SpinTryRead(ch, <char*>view.buf, view.len, &n, _spin_budget_ns(ms)))
                if r == R_OK:
                    return n
                if r == R_BUFFER_TOO_SMALL:
                    raise self._buffer_too_small(ch, view.len)
                if r != R_WOULD_BLOCK and r != R_PEER_GONE:
                    check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
                if deadline == 0:
                    deadline = _deadline_after(ms)
                with nogil:
                    got = Read(ch, <char*>view.buf, view.len, deadline)
                if got.ok():
                    return got.value()
                if got.status().raw_code() == S_OUT_OF_RANGE:
                    raise self._buffer_too_small(ch, view.len)
                self._blocked_failed(got.status(), OP_READ)
            finally:
                self._drop_reader()
                self._after_call()
        finally:
            PyBuffer_Release(&view)

    def write_many(self, messages, timeout_ms=None):
        """Sends every message of the iterable `messages` (bytes-like objects, or str sent as UTF-8) in order,
        publishing them to the reader at once at the end, and returns how many were sent.

        Waits up to timeout_ms (None: 1000 ms; negative: forever) for room as write() does, releasing the GIL
        once for the whole batch. If the deadline passes after some messages were sent, returns that count
        (the rest were not sent); if none could be sent, raises as write() does. A message larger than
        max_message_size raises MessageTooLargeError before anything is sent.
        """
        cdef list items = list(messages)
        cdef Py_ssize_t n = len(items)
        if n == 0:
            return 0
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef Py_buffer* views = <Py_buffer*>calloc(n, sizeof(Py_buffer))
        cdef const char** ptrs = <const char**>malloc(n * sizeof(char*))
        cdef size_t* sizes = <size_t*>malloc(n * sizeof(size_t))
        cdef Py_ssize_t held = 0, i
        cdef size_t done = 0, largest = 0, limit
        cdef CChannel* ch
        cdef CStatusOr[size_t] got
        try:
            if views == NULL or ptrs == NULL or sizes == NULL:
                raise MemoryError()
            for i in range(n):
                _message_buffer(items[i], &views[i])
                held += 1
                ptrs[i] = <const char*>views[i].buf
                sizes[i] = views[i].len
                if sizes[i] > largest:
                    largest = sizes[i]
            self._take_writer(deadline)
            try:
                ch = self._open_channel()
                limit = ch.max_message_bytes()
                if largest > limit:
                    for i in range(n):
                        if sizes[i] > limit:
                            raise self._too_large(ch, sizes[i], f"message {i}", "; nothing was sent")
                # Fast path, with the GIL: everything fits now.
                done = TryWriteBatch(ch, ptrs, sizes, n)
                if done < <size_t>n:
                    with nogil:
                        got = WriteBatch(ch, ptrs + done, sizes + done, n - done, deadline)
                    if PyErr_Occurred() != NULL:
                        _raise_pending()  # a signal handler raised while it waited
                    if got.ok():
                        done += got.value()
                    elif done == 0:
                        self._blocked_failed(got.status(), OP_WRITE)
                return done
            finally:
                self._drop_writer()
                self._after_call()
        finally:
            for i in range(held):
                PyBuffer_Release(&views[i])
            free(views)
            free(<void*>ptrs)
            free(sizes)

    def flush(self):
        """Publishes messages staged by this writer (claim commits with publish deferred). Cheap; never waits
        for room."""
        self._take_writer(_deadline_ns(None))
        cdef int r
        cdef CChannel* ch
        try:
            ch = self._open_channel()
            r = IoResultCode(ch.Flush())
            if r != R_OK:
                check_status(StatusOfResult(ch[0], r), OP_WRITE, self._role)
        finally:
            self._drop_writer()
            self._after_call()

    # ---- Zero-copy ----

    def recv_view(self, timeout_ms=None):
        """Waits like read() for the next message and returns a MessageView of it, in place in the ring:

            with ch.recv_view(timeout_ms=100) as mv:   # mv: a read-only memoryview
                handle(mv)

        The message stays in the ring, and this side's reads wait, until the with block ends (or the view's
        release()). Ending it, or close(), while buffers made from the view are still alive raises BufferError
        (like mmap.close()); the message is then released with the last such buffer.

        The view is shared memory: if another process truncates the segment file while it is open, its bytes
        may turn to zeros under you. Ending the view then raises CorruptError: do not trust what was read
        from it (copy what you keep, and act on it only once the view has ended without an error).
        """
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef CChannel* ch
        cdef const char* data = NULL
        cdef size_t size = 0
        cdef MessageView view
        self._take_reader(deadline)
        try:
            ch = self._open_channel()
            self._wait_peek(ch, deadline, &data, &size)
            view = MessageView.__new__(MessageView)
            view._start(self, <char*>data, size, False)
            self._rview = <void*>view
            self._rview_thread = PyThread_get_thread_ident()
            self._rowner = 0
            return view  # the reader lock stays taken until the view ends
        except BaseException:
            self._drop_reader()
            raise
        finally:
            self._after_call()

    def claim(self, Py_ssize_t size, timeout_ms=None):
        """Reserves room for a message of up to `size` bytes in the ring, waiting like write() for room, and
        returns a Claim; write the message in place:

            with ch.claim(len(header) + n) as mv:   # mv: a writable memoryview of `size` bytes
                mv[:len(header)] = header
                ...

        A normal exit sends the message (all `size` bytes, or the n given to the Claim's commit(n)); an
        exception aborts it. Buffers made from the view that are still alive then (a numpy array made with
        np.frombuffer(mv)) stay valid memory, but must not be written again: the message is the reader's.
        """
        if size < 0:
            raise _errors.InvalidParameterError(f"size is {size}; it must not be negative", E_INVALID_PARAM)
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef CChannel* ch
        cdef char* p = NULL
        cdef CStatus status
        cdef Claim view
        self._take_writer(deadline)
        try:
            ch = self._open_channel()
            if <size_t>size > ch.max_message_bytes():
                raise self._too_large(ch, size, "a claim")
            p = TryClaim(ch, size)
            if p == NULL:
                with nogil:
                    status = ClaimWait(ch, size, deadline, &p)
                if not status.ok():
                    self._blocked_failed(status, OP_WRITE)
            view = Claim.__new__(Claim)
            view._start(self, p, size, True)
            self._wview = <void*>view
            self._wview_thread = PyThread_get_thread_ident()
            self._wowner = 0
            return view  # the writer lock stays taken until the claim ends
        except BaseException:
            self._drop_writer()
            raise
        finally:
            self._after_call()

    # ---- Observers (any thread) ----

    def get_stats(self):
        """A dict of the channel's statistics, as this endpoint sees them."""
        cdef CChannelStats s = self._open_channel().stats()
        return {
            "master_pid": s.master_pid,
            "slave_pid": s.slave_pid,
            "master_alive": s.master_alive,
            "slave_alive": s.slave_alive,
            "master_heartbeat": s.master_heartbeat,
            "slave_heartbeat": s.slave_heartbeat,
            "m2s_write_count": s.m2s_write_count,
            "m2s_read_count": s.m2s_read_count,
            "s2m_write_count": s.s2m_write_count,
            "s2m_read_count": s.s2m_read_count,
            "epoch": s.epoch,
            "segment_epoch_ns": s.segment_epoch_ns,
            "reconnect_count": s.reconnect_count,
            "m2s_queued_bytes": s.m2s_queued_bytes,
            "m2s_queued_messages": s.m2s_queued_messages,
            "s2m_queued_bytes": s.s2m_queued_bytes,
            "s2m_queued_messages": s.s2m_queued_messages,
            "m2s_capacity": s.m2s_capacity,
            "s2m_capacity": s.s2m_capacity,
            "max_message_bytes": s.max_message_bytes,
            "wake_syscalls": s.wake_syscalls,
            "wait_syscalls": s.wait_syscalls,
        }

    def get_role(self):
        """This endpoint's role: 0 (master) or 1 (slave)."""
        return RoleOf(self._open_channel()[0])

    def is_remote_alive(self):
        """True if the peer is attached, holds its role and its heartbeat advances."""
        return self._open_channel().IsRemoteAlive()

    def peer_state(self):
        """'absent', 'alive', 'unresponsive' or 'dead'."""
        return PEER_STATE_NAMES[PeerStateOf(self._open_channel()[0])]

    @property
    def max_message_size(self):
        """The largest message this channel accepts, in bytes."""
        return self._open_channel().max_message_bytes()

    def __repr__(self):
        cls = type(self).__name__
        if self._role == ROLE_MASTER:
            role = "master"
        elif self._role == ROLE_SLAVE:
            role = "slave"
        else:
            role = "unopened"
        if self._disowned:
            return f"<{cls} {self.name!r} {role}, inherited from pid {self._owner_pid} through fork(): unusable>"
        if self._ch.get() == NULL or self._closing:
            return f"<{cls} {self.name!r} {role}, closed>"
        return f"<{cls} {self.name!r} {role}, peer {PEER_STATE_NAMES[PeerStateOf(self._ch.get()[0])]}, open>"
