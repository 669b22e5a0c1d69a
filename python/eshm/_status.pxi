# Part of _eshm.pyx (included there): result codes, constants, and the argument, status and deadline
# helpers every call uses. The one place an engine status becomes a Python exception is check_status.

cdef extern from "Python.h":
    # PyObject_GetBuffer without Cython's exception check: -1 leaves the error set for the caller to inspect.
    int _get_buffer_or_error "PyObject_GetBuffer"(object obj, Py_buffer* view, int flags)
    int PyErr_ExceptionMatches(object exc)
    void PyErr_Clear()

cdef extern from "pythread.h":
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds, int intr_flag) nogil

# Result codes, from eshm.h itself; ESHMError in errors.py has the same values (its tests compare them).
cdef extern from "eshm/eshm.h":
    cdef enum:
        E_INVALID_PARAM "ESHM_ERROR_INVALID_PARAM"
        E_BUFFER_TOO_SMALL "ESHM_ERROR_BUFFER_TOO_SMALL"
        E_TIMEOUT "ESHM_ERROR_TIMEOUT"
        E_MASTER_STALE "ESHM_ERROR_MASTER_STALE"
        E_SLAVE_STALE "ESHM_ERROR_SLAVE_STALE"
        E_MESSAGE_TOO_LARGE "ESHM_ERROR_MESSAGE_TOO_LARGE"
        E_CORRUPT "ESHM_ERROR_CORRUPT"
        E_CLOSED "ESHM_ERROR_CLOSED"
        E_INTERNAL "ESHM_ERROR_INTERNAL"

# absl::StatusCode values (absl's stable numbers) the binding looks at itself.
cdef enum:
    S_CANCELLED = 1
    S_DEADLINE_EXCEEDED = 4
    S_OUT_OF_RANGE = 11

# eshm::IoResult values.
cdef enum:
    R_OK = 0
    R_WOULD_BLOCK = 1
    R_TOO_LARGE = 2
    R_BUFFER_TOO_SMALL = 3
    R_PEER_GONE = 4
    R_CORRUPT = 5
    R_CLOSED = 6
    R_LOST = 7

# Which call a status came from (the same absl code means different things for each).
cdef COperation OP_OPEN = COperation.kOpen
cdef COperation OP_READ = COperation.kRead
cdef COperation OP_WRITE = COperation.kWrite

ROLE_MASTER = 0
ROLE_SLAVE = 1
ROLE_AUTO = 2
DISCONNECT_IMMEDIATELY = 0
DISCONNECT_ON_TIMEOUT = 1
DISCONNECT_NEVER = 2
PEER_STATE_NAMES = ("absent", "alive", "unresponsive", "dead")
DEFAULT_TIMEOUT_MS = 1000
DEFAULT_MAX_MESSAGES = 1024

WAIT_STRATEGIES = ("adaptive", "spin", "sleep")
# The names ESHM(role=..., disconnect_behavior=...) accepts besides the enums (in any case).
ROLE_NAMES = {"master": ROLE_MASTER, "slave": ROLE_SLAVE, "auto": ROLE_AUTO}
DISCONNECT_NAMES = {"immediately": DISCONNECT_IMMEDIATELY, "on_timeout": DISCONNECT_ON_TIMEOUT,
                    "never": DISCONNECT_NEVER}

cdef int64_t SLICE_NS = 50 * 1000 * 1000  # the longest a wait for a side lock goes without checking for signals
# A spinning endpoint's read first polls this long with the GIL held: most replies in a request/response
# exchange come within it, and releasing and re-taking the GIL costs a good part of a round trip. Short
# enough that other threads never notice (the interpreter's own switch interval is 5 ms).
cdef int64_t SPIN_WITH_GIL_NS = 5000
cdef int PEER_ABSENT = 0
cdef int PEER_ALIVE = 1


cdef void _set_wait(CChannelOptions* options, str wait):
    """How this endpoint's blocking calls wait (eshm/wait_strategy.h); the engine's default is adaptive."""
    if wait == "spin":
        # Never sleeps: lowest latency, and one core stays busy for as long as a call waits.
        options.wait.spin_ns = INT64_MAX
        options.wait.yield_ns = 0
        options.wait.allow_sleep = False
    elif wait == "sleep":
        # Sleeps on the futex at once: no CPU while waiting, a system call (and a wake-up) per wait.
        options.wait.spin_ns = 0
        options.wait.yield_ns = 0
        options.wait.allow_sleep = True


cdef int _raise_pending() except -1:
    """Raises the exception already set (returning -1 with one pending makes Cython propagate it)."""
    return -1


cdef int check_status(const CStatus& status, COperation op, int role) except -1:
    """The one place an absl::Status becomes a Python exception: returns 0 if OK, raises otherwise. The code
    is the C ABI's, from the engine's one mapping (eshm/internal/result_code.h)."""
    if status.ok():
        return 0
    cdef string message = MessageOf(status)
    cdef int code = ResultCodeFor(status, op, <CChannelRole>role)
    raise _errors.error_for_code(code, message.decode("utf-8", "replace"))


cdef double _timeout_ms(object timeout_ms) except? -2.0:
    """A checked timeout in ms: None = the default, negative (forever) = -1."""
    if timeout_ms is None:
        return DEFAULT_TIMEOUT_MS
    cdef double ms = timeout_ms  # accepts ints and floats; raises TypeError otherwise
    if ms != ms:
        raise _errors.InvalidParameterError("timeout_ms is NaN", E_INVALID_PARAM)
    return -1.0 if ms < 0 else ms


cdef int64_t _spin_budget_ns(double ms):
    """How long a spinning read polls with the GIL held: SPIN_WITH_GIL_NS, or less if the timeout is shorter."""
    if ms < 0 or ms * 1e6 >= SPIN_WITH_GIL_NS:
        return SPIN_WITH_GIL_NS
    return <int64_t>(ms * 1e6)


cdef int _message_buffer(object data, Py_buffer* view) except -1:
    """The bytes of one outgoing message in `view` (release it with PyBuffer_Release): a str as UTF-8, a
    C-contiguous buffer as it is (no copy), any other buffer (a transposed or sliced numpy array, a strided
    memoryview) copied once in C order, as its tobytes() gives."""
    if isinstance(data, str):
        data = (<str>data).encode("utf-8")
    # No try/except on this hot path (entering one costs a save of the exception state on every call).
    if _get_buffer_or_error(data, view, PyBUF_SIMPLE) == 0:
        return 0
    if not (PyErr_ExceptionMatches(BufferError) or PyErr_ExceptionMatches(ValueError)):
        return -1  # not a buffer at all: the TypeError stands
    # Not C-contiguous (numpy says ValueError, others BufferError): copied once, in C order.
    PyErr_Clear()
    PyObject_GetBuffer(memoryview(data).tobytes(), view, PyBUF_SIMPLE)
    return 0


cdef size_t _limit(object buffer_size) except? 0:
    """The largest message a read accepts: buffer_size, or no limit (SIZE_MAX) for None."""
    if buffer_size is None:
        return <size_t>-1
    cdef Py_ssize_t n = _int_arg(buffer_size, "buffer_size")
    if n < 0:
        raise _errors.InvalidParameterError(f"buffer_size is {n}; it must not be negative", E_INVALID_PARAM)
    return <size_t>n


cdef object _int_arg(object value, str name):
    """value as an int (anything with __index__, not a float or str); a TypeError that names the parameter."""
    if isinstance(value, int):
        return value
    try:
        return _operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}") from None


cdef int _enum_arg(object value, str name, dict names) except? -1:
    """An enum parameter given as its IntEnum member, its number, or its name in any case ('master')."""
    cdef object number
    if isinstance(value, str):
        number = names.get((<str>value).lower())
        if number is None:
            raise _errors.InvalidParameterError(
                f"{name} is {value!r}; use " + ", ".join(repr(k) for k in names) + " (in any case) or the enum",
                E_INVALID_PARAM)
        return number
    number = _int_arg(value, name)
    if number not in names.values():
        raise _errors.InvalidParameterError(
            f"{name} is {value!r}; use one of " + ", ".join(f"{k!r} ({v})" for k, v in names.items()),
            E_INVALID_PARAM)
    return number


cdef int64_t _deadline_ns(object timeout_ms) except? -2:
    """Absolute CLOCK_MONOTONIC deadline for a timeout in ms: None = the default, negative = forever."""
    return _deadline_after(_timeout_ms(timeout_ms))


cdef int64_t _deadline_after(double ms):
    """The deadline `ms` (checked by _timeout_ms) from now. The hot calls read the clock only once they have
    to wait (a message or room is usually there)."""
    if ms < 0:
        return INT64_MAX
    cdef int64_t now = NowNs()
    if ms * 1e6 >= <double>(INT64_MAX - now):
        return INT64_MAX
    return now + <int64_t>(ms * 1e6)
