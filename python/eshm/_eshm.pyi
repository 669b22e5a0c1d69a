# Type stubs of the compiled module eshm._eshm (_eshm.pyx). Use the package `eshm`: its ESHM subclasses Channel.
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Final, Literal, Protocol, final

from typing_extensions import Buffer, Self

PeerState = Literal["absent", "alive", "unresponsive", "dead"]
# How blocking calls wait: spin then yield then sleep (adaptive), spin only, or sleep at once.
WaitStrategy = Literal["adaptive", "spin", "sleep"]

ROLE_MASTER: Final = 0
ROLE_SLAVE: Final = 1
ROLE_AUTO: Final = 2
DISCONNECT_IMMEDIATELY: Final = 0
DISCONNECT_ON_TIMEOUT: Final = 1
DISCONNECT_NEVER: Final = 2
PEER_STATE_NAMES: Final[tuple[str, str, str, str]]
DEFAULT_TIMEOUT_MS: Final = 1000
DEFAULT_MAX_MESSAGES: Final = 1024
WAIT_STRATEGIES: Final[tuple[WaitStrategy, WaitStrategy, WaitStrategy]]

# A timeout in milliseconds: None = 1000 ms, negative = forever, 0 = do not wait.
_Timeout = int | float | None
# numpy arrays and scalars: typeshed's Buffer covers them only on Python >= 3.12 (numpy's stubs declare
# __buffer__ there only), so they are also accepted by the attribute every version of them has.
class _ArrayInterface(Protocol):
    @property
    def __array_interface__(self) -> dict[str, Any]: ...

# A bytes-like object of any layout (a numpy array included), as write() and read_into() take it.
_Bytes = Buffer | _ArrayInterface
# What write() and write_many() send: any bytes-like object, or a str (sent as UTF-8).
_Message = _Bytes | str
# role= and disconnect_behavior=: the IntEnum members (ints) or their names (any case at run time).
_RoleArg = int | Literal["master", "slave", "auto", "MASTER", "SLAVE", "AUTO"]
_DisconnectArg = int | Literal["immediately", "on_timeout", "never", "IMMEDIATELY", "ON_TIMEOUT", "NEVER"]

class _RingBuffer(Buffer):
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __len__(self) -> int: ...
    @property
    def ended(self) -> bool: ...
    def __enter__(self) -> memoryview: ...

@final
class MessageView(_RingBuffer):
    def release(self) -> None: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...

@final
class Claim(_RingBuffer):
    def commit(self, nbytes: int | None = None) -> None: ...
    def abort(self) -> None: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...

class Channel:
    @property
    def name(self) -> str: ...
    def __init__(
        self,
        shm_name: str,
        role: _RoleArg = 2,
        disconnect_behavior: _DisconnectArg = 1,
        stale_threshold_ms: int = 100,
        reconnect_wait_ms: int = 5000,
        reconnect_retry_interval_ms: int = 100,
        max_reconnect_attempts: int = 50,
        auto_cleanup: bool = True,
        use_threads: bool = True,
        *,
        heartbeat_interval_ms: int = 0,
        m2s_capacity: int = 1048576,
        s2m_capacity: int = 1048576,
        max_message_bytes: int = 0,
        wait: WaitStrategy = "adaptive",
        mode: int = 0o600,
        allow_other_owner: bool = False,
    ) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]: ...
    # Read side.
    def read(self, buffer_size: int | None = None, timeout_ms: _Timeout = None) -> bytes: ...
    def try_read(self, buffer_size: int | None = None) -> bytes | None: ...
    def read_many(
        self, max_messages: int = 1024, timeout_ms: _Timeout = None, buffer_size: int | None = None
    ) -> list[bytes]: ...
    def read_into(self, buffer: _Bytes, timeout_ms: _Timeout = None) -> int: ...
    def recv_view(self, timeout_ms: _Timeout = None) -> MessageView: ...
    def next_message_size(self) -> int | None: ...
    # Write side.
    def write(self, data: _Message, timeout_ms: _Timeout = None) -> None: ...
    def try_write(self, data: _Message) -> bool: ...
    def write_many(self, messages: Iterable[_Message], timeout_ms: _Timeout = None) -> int: ...
    def claim(self, size: int, timeout_ms: _Timeout = None) -> Claim: ...
    def flush(self) -> None: ...
    # Observers.
    def get_stats(self) -> dict[str, int | bool]: ...
    def get_role(self) -> int: ...
    def is_remote_alive(self) -> bool: ...
    def peer_state(self) -> PeerState: ...
    @property
    def max_message_size(self) -> int: ...
