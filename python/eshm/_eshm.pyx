# cython: language_level=3, boundscheck=False, wraparound=False, embedsignature=True
# distutils: language = c++
"""The compiled core of the eshm Python binding: a cdef class owning one eshm::Channel.

Use the pure-Python package ``eshm`` (its ``ESHM`` class subclasses :class:`Channel` here and converts
the integer enums to ``IntEnum`` values); this module is its implementation.

Threading. Like the C++ channel, one thread may read and another write at the same time; the binding
serializes readers with readers and writers with writers (a per-side lock), so any number of Python
threads may share one object safely. Blocking calls release the GIL and wait in slices of at most 50 ms,
checking for signals between slices: Ctrl-C raises KeyboardInterrupt promptly. Non-blocking calls keep the
GIL (they take microseconds). ``close()`` waits for a call in flight on another thread to notice it (at
most one slice) and makes that call raise ChannelClosedError.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals
from cpython.pythread cimport (
    NOWAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_get_thread_ident,
    PyThread_release_lock,
    PyThread_type_lock,
)
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport free, realloc
from libcpp.memory cimport unique_ptr
from libcpp.string cimport string
from libcpp.utility cimport move

from eshm._eshm_cpp cimport (
    CChannel,
    CChannelOptions,
    CChannelStats,
    CIoResult,
    CStatus,
    CStatusOr,
    IoResultCode,
    MessageOf,
    NextMessageSize,
    NowNs,
    Open,
    PeerStateOf,
    Read,
    RoleOf,
    SetEnums,
    StatusOfResult,
    TryRead,
    TryWrite,
    Write,
)

import os as _os
import weakref as _weakref

import eshm.errors as _errors

# Open channels, so that a forked child can disown the ones it inherited (see Channel._disown).
_open_channels = _weakref.WeakSet()


def _after_fork_in_child():
    for channel in list(_open_channels):
        (<Channel>channel)._disown()
    _open_channels.clear()


_os.register_at_fork(after_in_child=_after_fork_in_child)

cdef extern from "pythread.h":
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds, int intr_flag) nogil

# Result codes (eshm.h); ESHMError in errors.py has the same values.
cdef enum:
    E_INVALID_PARAM = -1
    E_SHM_CREATE = -2
    E_SHM_ATTACH = -3
    E_BUFFER_TOO_SMALL = -8
    E_NO_DATA = -9
    E_TIMEOUT = -10
    E_MASTER_STALE = -11
    E_SLAVE_STALE = -12
    E_ROLE_TAKEN = -13
    E_MESSAGE_TOO_LARGE = -14
    E_RING_FULL = -15
    E_CORRUPT = -16
    E_CLOSED = -17
    E_NOT_FOUND = -18
    E_PERMISSION = -19
    E_NO_SPACE = -20
    E_INCOMPATIBLE = -21
    E_INTERNAL = -22

# absl::StatusCode values.
cdef enum:
    S_OK = 0
    S_CANCELLED = 1
    S_INVALID_ARGUMENT = 3
    S_DEADLINE_EXCEEDED = 4
    S_NOT_FOUND = 5
    S_ALREADY_EXISTS = 6
    S_PERMISSION_DENIED = 7
    S_RESOURCE_EXHAUSTED = 8
    S_FAILED_PRECONDITION = 9
    S_OUT_OF_RANGE = 11
    S_UNAVAILABLE = 14
    S_DATA_LOSS = 15

# eshm::IoResult values.
cdef enum:
    R_OK = 0
    R_WOULD_BLOCK = 1
    R_TOO_LARGE = 2
    R_BUFFER_TOO_SMALL = 3
    R_PEER_GONE = 4
    R_CORRUPT = 5
    R_CLOSED = 6

# Which call a status came from (the same absl code means different things for each).
cdef enum Op:
    OP_OPEN
    OP_READ
    OP_WRITE

ROLE_MASTER = 0
ROLE_SLAVE = 1
ROLE_AUTO = 2
DISCONNECT_IMMEDIATELY = 0
DISCONNECT_ON_TIMEOUT = 1
DISCONNECT_NEVER = 2
PEER_STATE_NAMES = ("absent", "alive", "unresponsive", "dead")
DEFAULT_TIMEOUT_MS = 1000

cdef int64_t SLICE_NS = 50 * 1000 * 1000  # the longest a blocking call waits without checking for signals
cdef int PEER_ALIVE = 1


cdef int _code_for(int absl_code, Op op, int role, const string& message):
    """The ESHM result code for a failed absl::Status (as the C ABI maps them, eshm/c_api.cc)."""
    cdef int stale = E_SLAVE_STALE if role == ROLE_MASTER else E_MASTER_STALE
    if op == OP_OPEN:
        if absl_code == S_INVALID_ARGUMENT:
            return E_INVALID_PARAM
        if absl_code == S_ALREADY_EXISTS:
            return E_ROLE_TAKEN
        if absl_code == S_NOT_FOUND:
            return E_NOT_FOUND
        if absl_code == S_PERMISSION_DENIED:
            return E_PERMISSION
        if absl_code == S_RESOURCE_EXHAUSTED:
            return E_NO_SPACE
        if absl_code == S_FAILED_PRECONDITION:
            return E_CORRUPT if message.find(b"corrupt") != <size_t>-1 else E_INCOMPATIBLE
        if absl_code == S_DATA_LOSS:
            return E_CORRUPT
        if absl_code == S_DEADLINE_EXCEEDED:
            return E_TIMEOUT
        return E_SHM_ATTACH if role == ROLE_SLAVE else E_SHM_CREATE
    if absl_code == S_DEADLINE_EXCEEDED:
        return E_TIMEOUT
    if absl_code == S_UNAVAILABLE:
        return stale
    if absl_code == S_INVALID_ARGUMENT:
        return E_MESSAGE_TOO_LARGE if op == OP_WRITE else E_INVALID_PARAM
    if absl_code == S_OUT_OF_RANGE:
        return E_BUFFER_TOO_SMALL
    if absl_code == S_RESOURCE_EXHAUSTED:
        return E_RING_FULL if op == OP_WRITE else E_NO_DATA
    if absl_code == S_DATA_LOSS:
        return E_CORRUPT
    if absl_code == S_FAILED_PRECONDITION or absl_code == S_CANCELLED:
        return E_CLOSED
    return E_INTERNAL


cdef int check_status(const CStatus& status, Op op, int role) except -1:
    """The one place an absl::Status becomes a Python exception: returns 0 if OK, raises otherwise."""
    if status.ok():
        return 0
    cdef string message = MessageOf(status)
    cdef int code = _code_for(status.raw_code(), op, role, message)
    raise _errors.error_for_code(code, message.decode("utf-8", "replace"))


cdef int64_t _deadline_ns(object timeout_ms) except? -2:
    """Absolute CLOCK_MONOTONIC deadline for a timeout in ms: None = the default, negative = forever."""
    if timeout_ms is None:
        timeout_ms = DEFAULT_TIMEOUT_MS
    cdef double ms = timeout_ms  # accepts ints and floats; raises TypeError otherwise
    if ms != ms:
        raise _errors.InvalidParameterError("timeout_ms is NaN", E_INVALID_PARAM)
    if ms < 0:
        return INT64_MAX
    cdef int64_t now = NowNs()
    if ms * 1e6 >= <double>(INT64_MAX - now):
        return INT64_MAX
    return now + <int64_t>(ms * 1e6)


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
    cdef char* _buf            # the read buffer, guarded by _rlock
    cdef size_t _buf_cap
    cdef bint _disowned        # inherited through fork(): the parent's channel, not this process's
    cdef readonly str name
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._rlock = PyThread_allocate_lock()
        self._wlock = PyThread_allocate_lock()
        if self._rlock == NULL or self._wlock == NULL:
            raise MemoryError()

    def __init__(self, shm_name, int role=ROLE_AUTO, int disconnect_behavior=DISCONNECT_ON_TIMEOUT,
                 int stale_threshold_ms=100, int reconnect_wait_ms=5000, int reconnect_retry_interval_ms=100,
                 int max_reconnect_attempts=50, bint auto_cleanup=True, bint use_threads=True, *,
                 int heartbeat_interval_ms=1, uint64_t m2s_capacity=1 << 20, uint64_t s2m_capacity=1 << 20,
                 uint64_t max_message_bytes=0):
        if self._ch.get() != NULL:
            raise RuntimeError("the channel is already open")
        if not isinstance(shm_name, str):
            raise TypeError(f"shm_name must be a str, not {type(shm_name).__name__}")
        if not (0 <= role <= 2):
            raise _errors.InvalidParameterError(
                f"role is {role}; use ESHMRole.MASTER (0), SLAVE (1) or AUTO (2)", E_INVALID_PARAM)
        if not (0 <= disconnect_behavior <= 2):
            raise _errors.InvalidParameterError(
                f"disconnect_behavior is {disconnect_behavior}; use ESHMDisconnectBehavior.IMMEDIATELY (0), "
                "ON_TIMEOUT (1) or NEVER (2)", E_INVALID_PARAM)
        cdef string cname = shm_name.encode("utf-8")
        cdef CChannelOptions options
        SetEnums(&options, role, disconnect_behavior)
        options.stale_threshold_ms = stale_threshold_ms
        options.heartbeat_interval_ms = heartbeat_interval_ms
        options.reconnect_wait_ms = reconnect_wait_ms
        options.reconnect_retry_interval_ms = reconnect_retry_interval_ms
        options.max_reconnect_attempts = max_reconnect_attempts
        options.auto_cleanup = auto_cleanup
        options.use_threads = use_threads
        options.m2s_capacity = m2s_capacity
        options.s2m_capacity = s2m_capacity
        options.max_message_bytes = max_message_bytes
        cdef CStatusOr[unique_ptr[CChannel]] opened
        # A slave may wait here for its master (max_reconnect_attempts x reconnect_retry_interval_ms).
        with nogil:
            opened = Open(cname, options)
        check_status(opened.status(), OP_OPEN, role)
        self._ch = move(opened.value())
        self.name = shm_name
        self._role = RoleOf(self._ch.get()[0])
        self._disconnect = disconnect_behavior
        self._reconnect_wait_ns = <int64_t>reconnect_wait_ms * 1000000
        self._closing = False
        self._close_pending = False
        _open_channels.add(self)

    cdef void _disown(self):
        """In a forked child: forget the parent's channel without closing it.

        The child has no monitor thread and shares the parent's role lock; closing would release the parent's
        role (and remove its segment name). The object stays closed in the child; open a new channel there.
        """
        self._ch.release()  # leaked on purpose: destroying it would join a thread that only the parent has
        self._disowned = True
        self._closing = True

    def __dealloc__(self):
        # No call can be in flight: each holds a reference to self.
        if self._ch.get() != NULL:
            with nogil:
                self._ch.get().Close()
            self._ch.reset()
        free(self._buf)
        if self._rlock != NULL:
            PyThread_free_lock(self._rlock)
        if self._wlock != NULL:
            PyThread_free_lock(self._wlock)

    # ---- Locking and lifecycle ----

    cdef CChannel* _open_channel(self) except NULL:
        if self._disowned:
            raise _errors.ChannelClosedError(
                f"channel '{self.name}' was opened by the parent process before fork(); open a new ESHM in this "
                "process", E_CLOSED)
        if self._ch.get() == NULL or self._closing:
            raise _errors.ChannelClosedError(f"channel '{self.name}' is closed", E_CLOSED)
        return self._ch.get()

    cdef int _acquire(self, PyThread_type_lock lock, int64_t deadline_ns) except -1:
        """Takes a side lock, waiting (GIL released, in slices, interruptible) until deadline_ns."""
        cdef int got = PyThread_acquire_lock(lock, NOWAIT_LOCK)
        cdef int64_t now, wait_ns
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
        return 0

    cdef int _take_reader(self, int64_t deadline_ns) except -1:
        self._open_channel()
        self._acquire(self._rlock, deadline_ns)
        self._rowner = PyThread_get_thread_ident()
        return 0

    cdef void _drop_reader(self):
        self._rowner = 0
        PyThread_release_lock(self._rlock)

    cdef int _take_writer(self, int64_t deadline_ns) except -1:
        self._open_channel()
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
        self._closing = True
        cdef long me = PyThread_get_thread_ident()
        if self._rowner == me or self._wowner == me:
            # Called from a signal handler interrupting a read or write on this thread: that call raises
            # ChannelClosedError at its next slice and closes on its way out.
            self._close_pending = True
            return
        # Calls in flight on other threads notice _closing within one slice and let go of their lock.
        self._acquire(self._rlock, INT64_MAX)
        try:
            self._acquire(self._wlock, INT64_MAX)
        except BaseException:
            PyThread_release_lock(self._rlock)
            raise
        try:
            if self._ch.get() != NULL:
                self._ch.get().Close()  # with the GIL: no stats() or role() call can race with it
                self._ch.reset()
        finally:
            PyThread_release_lock(self._wlock)
            PyThread_release_lock(self._rlock)

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
            f"{message}; none attached within reconnect_wait_ms ({self._reconnect_wait_ns // 1000000} ms)")

    cdef int _between_slices(self, CChannel* ch, int64_t* gone_since_ns) except -1:
        """Runs (with the GIL) after a wait slice ended without result: signals, close(), reconnect window.

        Waiting in slices restarts the channel's reconnect_wait_ms window at each slice, so under
        ON_TIMEOUT the window is kept here, across slices, from when this call first saw the peer gone.
        """
        PyErr_CheckSignals()
        if self._closing:
            raise _errors.ChannelClosedError(f"channel '{self.name}' was closed during the call", E_CLOSED)
        cdef int64_t now
        if self._disconnect == DISCONNECT_ON_TIMEOUT:
            if PeerStateOf(ch[0]) == PEER_ALIVE:
                gone_since_ns[0] = 0
            else:
                now = NowNs()
                if gone_since_ns[0] == 0:
                    gone_since_ns[0] = now
                elif now - gone_since_ns[0] >= self._reconnect_wait_ns:
                    self._raise_stale(ch)
        return 0

    cdef int _ensure_buffer(self, size_t size) except -1:
        cdef char* grown
        if size > self._buf_cap:
            grown = <char*>realloc(self._buf, size)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._buf_cap = size
        return 0

    cdef object _buffer_too_small(self, CChannel* ch, size_t buffer_size):
        cdef int64_t size = NextMessageSize(ch)
        err = _errors.BufferTooSmallError(
            f"channel '{self.name}': the next message is {size} bytes but buffer_size is {buffer_size}; "
            f"the message stays in the channel: read it with buffer_size >= {size}", E_BUFFER_TOO_SMALL)
        err.message_size = size
        return err

    # ---- Read side ----

    def read(self, Py_ssize_t buffer_size=4096, timeout_ms=None):
        """Returns the next message (bytes), waiting up to timeout_ms (None: 1000 ms; negative: forever).

        Raises TimeoutError (ESHMTimeoutError) if none arrives in time, BufferTooSmallError if the next
        message is larger than buffer_size (it stays queued), PeerStaleError if the peer is gone and does not
        come back as the disconnect behaviour allows.
        """
        if buffer_size < 0:
            raise _errors.InvalidParameterError(f"buffer_size is {buffer_size}; it must not be negative",
                                                E_INVALID_PARAM)
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef CChannel* ch
        cdef size_t n = 0
        cdef int r
        cdef int64_t slice_end, gone_since = 0
        cdef CStatusOr[size_t] got
        cdef int code
        self._take_reader(deadline)
        try:
            ch = self._open_channel()
            self._ensure_buffer(buffer_size if buffer_size > 0 else 1)
            # Fast path, with the GIL: a message is already queued.
            r = IoResultCode(TryRead(ch, self._buf, buffer_size, &n))
            if r == R_OK:
                return PyBytes_FromStringAndSize(self._buf, n)
            if r == R_BUFFER_TOO_SMALL:
                raise self._buffer_too_small(ch, buffer_size)
            if r != R_WOULD_BLOCK and r != R_PEER_GONE:
                check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
            if self._disconnect == DISCONNECT_ON_TIMEOUT and PeerStateOf(ch[0]) != PEER_ALIVE:
                gone_since = NowNs()
            while True:
                slice_end = min(deadline, NowNs() + SLICE_NS)
                with nogil:
                    got = Read(ch, self._buf, buffer_size, slice_end)
                if got.ok():
                    return PyBytes_FromStringAndSize(self._buf, got.value())
                code = got.status().raw_code()
                if code == S_OUT_OF_RANGE:
                    raise self._buffer_too_small(ch, buffer_size)
                if code != S_DEADLINE_EXCEEDED or slice_end >= deadline:
                    check_status(got.status(), OP_READ, self._role)
                self._between_slices(ch, &gone_since)
        finally:
            self._drop_reader()
            self._after_call()

    def try_read(self, Py_ssize_t buffer_size=4096):
        """Returns the next message (bytes) if one is queued, else None. Never waits.

        Raises BufferTooSmallError if the next message is larger than buffer_size (it stays queued).
        """
        if buffer_size < 0:
            raise _errors.InvalidParameterError(f"buffer_size is {buffer_size}; it must not be negative",
                                                E_INVALID_PARAM)
        cdef CChannel* ch = self._open_channel()
        cdef size_t n = 0
        cdef int r
        if not PyThread_acquire_lock(self._rlock, NOWAIT_LOCK):
            return None  # another thread is reading: whatever arrives is its
        self._rowner = PyThread_get_thread_ident()
        try:
            self._ensure_buffer(buffer_size if buffer_size > 0 else 1)
            r = IoResultCode(TryRead(ch, self._buf, buffer_size, &n))
            if r == R_OK:
                return PyBytes_FromStringAndSize(self._buf, n)
            if r == R_WOULD_BLOCK:
                return None
            if r == R_BUFFER_TOO_SMALL:
                raise self._buffer_too_small(ch, buffer_size)
            check_status(StatusOfResult(ch[0], r), OP_READ, self._role)
        finally:
            self._drop_reader()
            self._after_call()

    def next_message_size(self):
        """The size in bytes of the next queued message, or None if none is queued. Never waits."""
        cdef CChannel* ch = self._open_channel()
        cdef int64_t size
        if not PyThread_acquire_lock(self._rlock, NOWAIT_LOCK):
            return None
        try:
            size = NextMessageSize(ch)
        finally:
            PyThread_release_lock(self._rlock)
        return None if size < 0 else size

    # ---- Write side ----

    def write(self, data, timeout_ms=None):
        """Sends one message (a bytes-like object, or a str sent as UTF-8).

        Waits up to timeout_ms (None: 1000 ms; negative: forever) for room in the ring (backpressure:
        nothing is ever overwritten) and, per the disconnect behaviour, for the peer. Raises TimeoutError,
        MessageTooLargeError, or PeerStaleError.
        """
        if isinstance(data, str):
            data = (<str>data).encode("utf-8")
        cdef int64_t deadline = _deadline_ns(timeout_ms)
        cdef Py_buffer view
        cdef CChannel* ch
        cdef int r
        cdef int64_t slice_end, gone_since = 0
        cdef CStatus status
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._take_writer(deadline)
            try:
                ch = self._open_channel()
                r = IoResultCode(TryWrite(ch, <const char*>view.buf, view.len))
                if r == R_OK:
                    return None
                if r != R_WOULD_BLOCK:
                    check_status(StatusOfResult(ch[0], r), OP_WRITE, self._role)
                while True:
                    slice_end = min(deadline, NowNs() + SLICE_NS)
                    with nogil:
                        status = Write(ch, <const char*>view.buf, view.len, slice_end)
                    if status.ok():
                        return None
                    if status.raw_code() != S_DEADLINE_EXCEEDED or slice_end >= deadline:
                        check_status(status, OP_WRITE, self._role)
                    self._between_slices(ch, &gone_since)
            finally:
                self._drop_writer()
                self._after_call()
        finally:
            PyBuffer_Release(&view)

    def try_write(self, data):
        """Sends one message if the ring has room now: True if sent, False if the ring is full. Never waits."""
        if isinstance(data, str):
            data = (<str>data).encode("utf-8")
        cdef Py_buffer view
        cdef CChannel* ch = self._open_channel()
        cdef int r
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
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
                check_status(StatusOfResult(ch[0], r), OP_WRITE, self._role)
            finally:
                self._drop_writer()
                self._after_call()
        finally:
            PyBuffer_Release(&view)

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
        if self._ch.get() == NULL:
            return f"<{type(self).__name__} {self.name!r} closed>"
        role = "master" if self._role == ROLE_MASTER else "slave"
        return f"<{type(self).__name__} {self.name!r} {role}, peer {self.peer_state()}>"
