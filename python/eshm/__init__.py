"""eshm: lock-free shared-memory IPC between two processes (Linux).

One named channel connects exactly one master and one slave through two rings of whole messages
(master->slave and slave->master). A full ring pushes back on the writer; nothing is ever overwritten.
Each side sees whether the other is alive and reconnects by itself when the peer comes back.

    from eshm import ESHM, ESHMRole

    with ESHM("demo", role=ESHMRole.MASTER) as ch:
        ch.write(b"hello")
        reply = ch.read(timeout_ms=1000)

This is the API of the original ESHM Python wrapper (ESHM, ESHMRole, ESHMDisconnectBehavior, ESHMError,
TimeoutError on timeouts, RuntimeError for the rest), on top of the C++ engine.
"""

from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

if TYPE_CHECKING:  # numpy stays optional: imported at run time only by the array calls
    import numpy
    import numpy.typing

from eshm.errors import (
    BufferTooSmallError,
    ChannelClosedError,
    ChannelNotFoundError,
    ForkedChannelError,
    ChannelPermissionError,
    CorruptError,
    ESHMError,
    ESHMException,
    ESHMRuntimeError,
    ESHMTimeoutError,
    IncompatibleError,
    InvalidParameterError,
    MessageTooLargeError,
    NoSpaceError,
    NotAnArrayError,
    PeerStaleError,
    RingFullError,
    RoleTakenError,
)
from eshm import _eshm, _ndarray
# Channel: the base class of ESHM, the type WaitSet gives its members back as.
from eshm._eshm import CLOSED, PEER_CHANGED, READABLE, WRITABLE, Channel, Claim, MessageView, WaitSet
from eshm._ndarray import ArrayView

__version__ = "2.1.0"

__all__ = [
    "ESHM",
    "WaitSet",
    "Channel",
    "READABLE",
    "WRITABLE",
    "PEER_CHANGED",
    "CLOSED",
    "ESHMRole",
    "ESHMDisconnectBehavior",
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
    "MessageView",
    "Claim",
    "ArrayView",
    "WaitStrategy",
    "RoleName",
    "DisconnectName",
]


# How an endpoint's blocking calls wait (ESHM(..., wait=...)).
WaitStrategy = Literal["adaptive", "spin", "sleep"]
# The names ESHM() accepts for role= and disconnect_behavior= besides the enums (any case works at run time).
RoleName = Literal["master", "slave", "auto", "MASTER", "SLAVE", "AUTO"]
DisconnectName = Literal["immediately", "on_timeout", "never", "IMMEDIATELY", "ON_TIMEOUT", "NEVER"]


class ESHMRole(IntEnum):
    """Which end of the channel: MASTER creates it, SLAVE attaches; AUTO takes master if free, else slave."""

    MASTER = 0
    SLAVE = 1
    AUTO = 2


class ESHMDisconnectBehavior(IntEnum):
    """What a read (with nothing queued) or a write (with the ring full) does while the peer is gone.

    IMMEDIATELY fails at once; ON_TIMEOUT waits up to reconnect_wait_ms for a peer that went away (exited or
    unresponsive), then fails, and waits for a peer that has not attached yet as long as the call's own
    timeout allows; NEVER waits as long as the call's own timeout allows.
    """

    IMMEDIATELY = 0
    ON_TIMEOUT = 1
    NEVER = 2


class ESHM(_eshm.Channel):
    """One endpoint of the named channel ``shm_name`` (the segment /dev/shm/eshm_<shm_name>).

    ESHM(shm_name, role=ESHMRole.AUTO, disconnect_behavior=ESHMDisconnectBehavior.ON_TIMEOUT,
         stale_threshold_ms=100, reconnect_wait_ms=5000, reconnect_retry_interval_ms=100,
         max_reconnect_attempts=50, auto_cleanup=True, use_threads=True, *,
         heartbeat_interval_ms=0, m2s_capacity=1 << 20, s2m_capacity=1 << 20, max_message_bytes=0,
         wait="adaptive", mode=0o600, allow_other_owner=False)

    role and disconnect_behavior take the enums, their numbers, or their names in any case ("master",
    "on_timeout"). A slave waits for its master up to max_reconnect_attempts x reconnect_retry_interval_ms
    (0 attempts: forever). Raises RoleTakenError (a FileExistsError) if a live process holds the role (the
    message names its pid), InvalidParameterError (a ValueError) for a bad name or option, TypeError (naming
    the parameter) for an argument of the wrong type, ChannelNotFoundError (a FileNotFoundError) if no master
    appears.

    wait says how this endpoint's blocking calls wait for data or room: "adaptive" (spin ~20 us, yield
    ~30 us, then sleep on a futex), "spin" (never sleep: the lowest latency, a core busy while waiting) or
    "sleep" (a futex at once: no CPU while idle; only a reader in the middle of a steady stream yields and
    looks for about a microsecond first, so that catching up does not cost the writer a wake-up each time).

    mode is the segment file's permissions when this endpoint creates it (0o600: this user only; 0o660: the
    file's group too). allow_other_owner=True accepts a segment another user created; by default one is
    refused (ChannelPermissionError), since another local user could have taken the name first to intercept
    the channel. To share a channel between users, see "Sharing between users" in the package README.

    Methods: write(data, timeout_ms=None), try_write(data), write_many(messages, timeout_ms=None),
    flush(), read(buffer_size=None, timeout_ms=None), try_read(buffer_size=None),
    read_many(max_messages=1024, timeout_ms=None, buffer_size=None), read_into(buffer, timeout_ms=None),
    zero-copy recv_view(timeout_ms=None) and claim(size, timeout_ms=None) (context managers giving a
    memoryview into the ring), numpy arrays with their dtype and shape: write_array(array),
    read_array(), recv_array() (zero-copy, a context manager), next_message_size(), get_stats(),
    get_role(), is_remote_alive(), peer_state(), close(); a context manager. A timeout_ms of None means
    1000 ms; a negative one waits forever (for a message, room, or a peer that has not attached yet). An
    object garbage-collected while open emits a ResourceWarning; one inherited through fork() raises
    ForkedChannelError in the child; pickling one raises TypeError (open the channel by name instead).
    """

    def __init__(
        self,
        shm_name: str,
        role: Union[ESHMRole, RoleName, int] = ESHMRole.AUTO,
        disconnect_behavior: Union[ESHMDisconnectBehavior, DisconnectName, int] = ESHMDisconnectBehavior.ON_TIMEOUT,
        stale_threshold_ms: int = 100,
        reconnect_wait_ms: int = 5000,
        reconnect_retry_interval_ms: int = 100,
        max_reconnect_attempts: int = 50,
        auto_cleanup: bool = True,
        use_threads: bool = True,
        *,
        heartbeat_interval_ms: int = 0,
        m2s_capacity: int = 1 << 20,
        s2m_capacity: int = 1 << 20,
        max_message_bytes: int = 0,
        wait: WaitStrategy = "adaptive",
        mode: int = 0o600,
        allow_other_owner: bool = False,
    ) -> None:
        super().__init__(
            shm_name,
            role,
            disconnect_behavior,
            stale_threshold_ms,
            reconnect_wait_ms,
            reconnect_retry_interval_ms,
            max_reconnect_attempts,
            auto_cleanup,
            use_threads,
            heartbeat_interval_ms=heartbeat_interval_ms,
            m2s_capacity=m2s_capacity,
            s2m_capacity=s2m_capacity,
            max_message_bytes=max_message_bytes,
            wait=wait,
            mode=mode,
            allow_other_owner=allow_other_owner,
        )

    def get_role(self) -> ESHMRole:
        """This endpoint's role: ESHMRole.MASTER or ESHMRole.SLAVE (never AUTO)."""
        return ESHMRole(super().get_role())

    # ---- numpy arrays (numpy is imported by these calls only) ----

    def write_array(self, array: "numpy.typing.ArrayLike", timeout_ms: Optional[float] = None) -> None:
        """Sends an array as one message carrying its dtype and shape (any layout: a transposed or sliced
        array is sent in C order); one copy, straight into the ring. Waits for room like write(). Arrays of
        Python objects raise TypeError. The message format is described in eshm/_ndarray.py."""
        _ndarray.write_array(self, array, timeout_ms)

    def read_array(self, timeout_ms: Optional[float] = None) -> "numpy.typing.NDArray[Any]":
        """Receives an array sent by write_array(): a new, writable array with its dtype and shape (one copy,
        from the ring). Waits like read(). A message that is not such an array raises NotAnArrayError (a
        ValueError) and stays queued."""
        return _ndarray.read_array(self, timeout_ms)

    def recv_array(self, timeout_ms: Optional[float] = None) -> ArrayView:
        """Receives an array sent by write_array() without copying it:

            with ch.recv_array(timeout_ms=100) as a:   # a: a read-only ndarray in place in the ring
                total = a.sum()

        The array is valid inside the block only (see ArrayView): keep a.copy() to use it later. Waits like
        read(); a message that is not such an array raises NotAnArrayError and stays queued."""
        return _ndarray.recv_array(self, timeout_ms)
