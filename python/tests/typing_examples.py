"""Typed uses of the eshm API, checked by mypy --strict in test_typing.py (never run as a test).

Every line must type-check; the annotated assignments pin down what the stubs (eshm/_eshm.pyi) promise.
"""

from __future__ import annotations

import array

import eshm
from eshm import ESHM, BufferTooSmallError, Claim, ESHMRole, MessageView, PeerStaleError, WaitSet


def examples(name: str) -> None:
    with ESHM(name, role=ESHMRole.MASTER, m2s_capacity=1 << 16, max_message_bytes=4096) as ch:
        ch.write(b"bytes")
        ch.write("str, sent as UTF-8", timeout_ms=10)
        ch.write(bytearray(b"x"), timeout_ms=-1)
        ch.write(memoryview(b"abc")[1:], timeout_ms=0.5)
        sent_now: bool = ch.try_write(array.array("i", [1, 2]))
        count: int = ch.write_many([b"a", "b", bytearray(b"c")], timeout_ms=None)
        count = ch.write_many(b"%d" % i for i in range(3))
        ch.flush()
        strategy: eshm.WaitStrategy = "spin"
        ESHM(name + "_spin", role=ESHMRole.MASTER, wait=strategy).close()
        ESHM(name + "_named", role="master", disconnect_behavior="never").close()
        role_name: eshm.RoleName = "slave"
        print(role_name)

        message: bytes = ch.read(buffer_size=1 << 16, timeout_ms=100)
        message = ch.read()  # any size
        message = ch.read(None, timeout_ms=-1)
        maybe: bytes | None = ch.try_read()
        batch: list[bytes] = ch.read_many(max_messages=32, timeout_ms=0, buffer_size=None)
        buf = bytearray(4096)
        n: int = ch.read_into(buf)
        n = ch.read_into(memoryview(buf)[16:], timeout_ms=5)
        size: int | None = ch.next_message_size()

        view: MessageView = ch.recv_view(timeout_ms=100)
        with view as mv:
            first: int = mv[0]
            data: bytes = mv.tobytes()
        with ch.recv_view() as mv2:
            checksum = sum(mv2)

        claim: Claim = ch.claim(64)
        with claim as out:
            out[:5] = b"hello"
            claim.commit(5)
        with ch.claim(8) as out2:
            out2[:] = b"12345678"

        role: ESHMRole = ch.get_role()
        stats = ch.get_stats()
        writes: int = stats["m2s_write_count"]
        alive: bool = ch.is_remote_alive()
        state: str = ch.peer_state()
        limit: int = ch.max_message_size
        closed: bool = ch.closed
        text: str = ch.name
        print(sent_now, count, message, maybe, batch, n, size, first, data, checksum, role, writes, alive,
              state, limit, closed, text)

        waiters = WaitSet()
        waiters.add(ch)
        waiters.add(ch2 := ESHM(name + "_2", role="master"), readable=False, writable=True, write_size=64)
        ready: list[eshm.Channel] = waiters.wait(timeout_ms=0)
        for channel, events in waiters.wait_events(timeout_ms=0):
            readable: bool = bool(events & eshm.READABLE)
            print(channel.name, readable)
        waiters.remove(ch2)
        waiters.wake()
        ch2.close()
        print(ready, len(waiters))

        async def consume() -> list[bytes]:
            await ch.write_async(b"to the slave", timeout_ms=10)
            got: list[bytes] = []
            try:
                got.append(await ch.read_async(timeout_ms=0))
            except TimeoutError:
                pass
            async for message in ch:
                got.append(message)
                break
            return got

        print(consume)
    try:
        ESHM(name, role=ESHMRole.SLAVE).close()
    except BufferTooSmallError as e:
        needed: int | None = e.message_size
        print(needed)
    except PeerStaleError as e:
        code: eshm.ESHMError = e.code
        print(code)
