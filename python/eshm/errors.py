"""Exceptions raised by eshm, and the numeric result codes they carry.

Every exception eshm raises derives from :class:`ESHMException` and carries ``.code``, an
:class:`ESHMError` (the same numbers as the C ABI's ``ESHM_ERROR_*`` codes in ``eshm/eshm.h``).
Timeouts derive from the built-in :class:`TimeoutError`; every other error derives from the built-in
:class:`RuntimeError` (as the original wrapper raised), and also from the built-in class that best
describes it where one fits, so ``except FileExistsError`` or ``except ValueError`` work as expected.
"""

from enum import IntEnum
from typing import Optional

__all__ = [
    "ESHMError",
    "ESHMException",
    "ESHMTimeoutError",
    "ESHMRuntimeError",
    "InvalidParameterError",
    "BufferTooSmallError",
    "MessageTooLargeError",
    "PeerStaleError",
    "RoleTakenError",
    "RingFullError",
    "CorruptError",
    "ChannelClosedError",
    "ForkedChannelError",
    "ChannelNotFoundError",
    "ChannelPermissionError",
    "NoSpaceError",
    "IncompatibleError",
    "NotAnArrayError",
    "error_for_code",
]


class ESHMError(IntEnum):
    """Result codes; the values of eshm/eshm.h (0 and -8..-11 keep the original library's values)."""

    SUCCESS = 0
    INVALID_PARAM = -1
    SHM_CREATE = -2
    SHM_ATTACH = -3
    SHM_DETACH = -4
    SHM_DELETE = -5
    MUTEX_INIT = -6
    NOT_INITIALIZED = -7
    BUFFER_TOO_SMALL = -8
    NO_DATA = -9
    TIMEOUT = -10
    MASTER_STALE = -11
    SLAVE_STALE = -12
    ROLE_TAKEN = -13
    MESSAGE_TOO_LARGE = -14
    RING_FULL = -15
    CORRUPT = -16
    CLOSED = -17
    NOT_FOUND = -18
    PERMISSION = -19
    NO_SPACE = -20
    INCOMPATIBLE = -21
    INTERNAL = -22


class ESHMException(Exception):
    """Base of every eshm exception. ``code`` is the :class:`ESHMError`."""

    code: ESHMError = ESHMError.INTERNAL

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = ESHMError(code)

    def __reduce__(self):
        # The attributes set after construction (message_size...) travel too, as the third item (state).
        return (type(self), (str(self), int(self.code)), self.__dict__ or None)


class ESHMTimeoutError(ESHMException, TimeoutError):
    """The timeout passed: no message arrived, the ring stayed full, or the peer did not come in time."""

    code = ESHMError.TIMEOUT


class ESHMRuntimeError(ESHMException, RuntimeError):
    """Every eshm error other than a timeout."""


class InvalidParameterError(ESHMRuntimeError, ValueError):
    """A bad argument: a bad channel name, an out-of-range option."""

    code = ESHMError.INVALID_PARAM


class BufferTooSmallError(ESHMRuntimeError, ValueError):
    """The next message is larger than the buffer. It stays queued; ``message_size`` is its size."""

    code = ESHMError.BUFFER_TOO_SMALL
    message_size: Optional[int] = None


class MessageTooLargeError(ESHMRuntimeError, ValueError):
    """The message is larger than the channel's maximum message size; it can never be written.

    ``message_size`` is its size and ``max_message_size`` the channel's limit, both in bytes (also in the
    message).
    """

    code = ESHMError.MESSAGE_TOO_LARGE
    message_size: Optional[int] = None
    max_message_size: Optional[int] = None


class PeerStaleError(ESHMRuntimeError, ConnectionError):
    """The peer is gone (exited, unresponsive or not attached) and did not come back in time.

    ``code`` is MASTER_STALE on a slave, SLAVE_STALE on a master. Retrying later is fine: the channel
    reconnects by itself.
    """

    code = ESHMError.MASTER_STALE


class RoleTakenError(ESHMRuntimeError, FileExistsError):
    """A live process already holds the requested role (the message names its pid)."""

    code = ESHMError.ROLE_TAKEN


class RingFullError(ESHMRuntimeError):
    """The outgoing ring has no room right now."""

    code = ESHMError.RING_FULL


class CorruptError(ESHMRuntimeError):
    """The shared memory is corrupt: the peer broke the ring's invariants or the header is inconsistent."""

    code = ESHMError.CORRUPT


class ChannelClosedError(ESHMRuntimeError, ValueError):
    """The channel is closed (like I/O on a closed file, also a ValueError)."""

    code = ESHMError.CLOSED


class ForkedChannelError(ChannelClosedError):
    """The channel was opened by the parent process and inherited through fork(): it cannot be used in the
    child (its role and monitor thread belong to the parent). Open a new ESHM in the child."""

    code = ESHMError.CLOSED


class ChannelNotFoundError(ESHMRuntimeError, FileNotFoundError):
    """A slave found no channel: no master created it within max_reconnect_attempts retries."""

    code = ESHMError.NOT_FOUND


class ChannelPermissionError(ESHMRuntimeError, PermissionError):
    """The operating system refused access to the channel's segment."""

    code = ESHMError.PERMISSION


class NoSpaceError(ESHMRuntimeError, MemoryError):
    """Not enough shared memory for the segment (/dev/shm full, or too many open files)."""

    code = ESHMError.NO_SPACE


class IncompatibleError(ESHMRuntimeError):
    """The segment was made by an incompatible eshm version."""

    code = ESHMError.INCOMPATIBLE


class NotAnArrayError(ESHMRuntimeError, ValueError):
    """read_array() or recv_array() found a message that write_array() did not make. It stays queued."""

    code = ESHMError.INVALID_PARAM


_CLASS_FOR_CODE = {
    ESHMError.TIMEOUT: ESHMTimeoutError,
    ESHMError.INVALID_PARAM: InvalidParameterError,
    ESHMError.BUFFER_TOO_SMALL: BufferTooSmallError,
    ESHMError.MESSAGE_TOO_LARGE: MessageTooLargeError,
    ESHMError.MASTER_STALE: PeerStaleError,
    ESHMError.SLAVE_STALE: PeerStaleError,
    ESHMError.ROLE_TAKEN: RoleTakenError,
    ESHMError.RING_FULL: RingFullError,
    ESHMError.CORRUPT: CorruptError,
    ESHMError.CLOSED: ChannelClosedError,
    ESHMError.NOT_FOUND: ChannelNotFoundError,
    ESHMError.PERMISSION: ChannelPermissionError,
    ESHMError.NO_SPACE: NoSpaceError,
    ESHMError.INCOMPATIBLE: IncompatibleError,
}


def error_for_code(code: int, message: str) -> ESHMException:
    """The exception (not raised) for result code ``code`` with ``message``."""
    code = ESHMError(code)
    cls = _CLASS_FOR_CODE.get(code, ESHMRuntimeError)
    return cls(message, code)
