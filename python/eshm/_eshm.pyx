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

Zero-copy. ``recv_view()`` and ``claim()`` return a MessageView / Claim: a message in place in the ring,
exported through the buffer protocol with an export count. While one is in progress its side's lock stays
taken (other threads' calls on that side wait; this thread's raise BufferError). Ending a MessageView, or
closing the channel during a view or claim, while a buffer made from it is alive raises BufferError, as
mmap.close() does. A Claim ends as asked even then (commit on a normal exit, abort on an exception: the
natural ``a = np.frombuffer(mv, ...)`` inside the block outlives it): its surviving buffers are "detached",
still valid memory, because the channel defers the engine's close (and with it the unmapping, the role's
release and the name's removal) until the last of them is released; what they show after the commit is the
reader's, never to be written again.
"""

from cpython.buffer cimport (
    PyBUF_FORMAT,
    PyBUF_ND,
    PyBUF_SIMPLE,
    PyBUF_STRIDES,
    PyBUF_WRITABLE,
    PyBuffer_Release,
    PyObject_GetBuffer,
)
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals, PyErr_Occurred
from cpython.pythread cimport (
    NOWAIT_LOCK,
    PyThread_acquire_lock,
    PyThread_allocate_lock,
    PyThread_free_lock,
    PyThread_get_thread_ident,
    PyThread_release_lock,
    PyThread_type_lock,
)
cimport cython
from libc.stdint cimport INT64_MAX, int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libcpp.memory cimport shared_ptr, unique_ptr
from libcpp.string cimport string
from libcpp.utility cimport move
from libcpp.vector cimport vector

from eshm._eshm_cpp cimport (
    CChannel,
    CChannelOptions,
    CChannelRole,
    CChannelStats,
    CIoResult,
    COperation,
    CStatus,
    CStatusOr,
    CWaitReady,
    CWaitSet,
    ClaimWait,
    IoResultCode,
    MessageOf,
    NextMessageSize,
    NowNs,
    Open,
    Peek,
    PeerStateOf,
    Read,
    ResultCodeFor,
    RoleOf,
    SpinTryPeek,
    SpinTryRead,
    SetEnums,
    SetMainThreadIdent,
    StatusOfResult,
    TryClaim,
    TryPeek,
    TryRead,
    TryWrite,
    TryWriteBatch,
    WaitOnSet,
    Write,
    WriteBatch,
)

import operator as _operator
import os as _os
import threading as _threading
import warnings as _warnings
import weakref as _weakref

import eshm.errors as _errors

_aio = None


def _aio_module():
    """eshm._aio, imported on the first asyncio call (it imports asyncio, which plain users never pay for)."""
    global _aio
    if _aio is None:
        import eshm._aio
        _aio = eshm._aio
    return _aio

# Open channels, so that a forked child can disown the ones it inherited (see Channel._disown).
_open_channels = _weakref.WeakSet()


def _after_fork_in_child():
    for channel in list(_open_channels):
        (<Channel>channel)._disown()
    _open_channels.clear()


_os.register_at_fork(after_in_child=_after_fork_in_child)

# Whose waits run Python's signal handlers (the channel's wait check, _eshm_glue.h).
SetMainThreadIdent(_threading.main_thread().ident)


# The parts, in the order they build on each other.
include "_status.pxi"
include "_channel.pxi"
include "_views.pxi"
include "_waitset.pxi"
