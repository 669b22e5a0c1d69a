"""eshm's Python transports for eshm-bench (benchmarks/eshm_bench), and `python -m eshm.bench`, its front end.

Without --peer, execs eshm-bench (--eshm-bench=PATH, $ESHM_BENCH, on PATH, Bazel's runfiles beside this file, or
bazel-bin's) with this interpreter's transports (--compare=python unless given); --peer-list prints each transport,
`ok` or why it cannot run here, and what it measures. eshm-bench runs one (peer_transports.cc) as `python -m
eshm.bench --peer=NAME --mode=stream|pingpong --wait=spin|blocking --size=BYTES --warmup_s=S --duration_s=S
[--messages=N] [--eshm_wait=sleep|adaptive] [--cpus=A,B] --samples=PATH [--name=NAME]`: it forks the second process,
runs both sides and prints `messages=N seconds=S` last. NAME (default: one of its own) names its channels and files;
on SIGTERM both processes close their ends, removing what they created, and exit. stream: the parent writes for
warmup_s, a marker, for duration_s (or N messages), an end marker; the child counts the messages between the markers
over its own time (the counts must agree, every message must have its size). pingpong: the child echoes; each round
trip's nanoseconds go to PATH (uint64, native order). Exit status 3: this transport cannot run this combination
(why, on stderr).
"""

import argparse
import array
import collections
import functools
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import time
import uuid

UNSUPPORTED = 3
# Markers that end a phase: lengths the measured messages never have (sizes start at 8 bytes).
_WARM_END, _END = b"W", b"E"
# Every queue holds about this much between the two processes, as eshm's rings do: without a bound,
# multiprocessing.Queue's put() and pyzmq's send() would "send" into the writer's own memory.
IN_FLIGHT_BYTES = 4 << 20
ARRAY_SLOTS = 4


# One process's end of a connection: send(message), recv() -> message, close(), and what some sides use.
End = collections.namedtuple("End", "send recv close send_many recv_many before_refill awaits_send",
                             defaults=(lambda: None, None, None, None, False))


def _spinning(recv_now, nothing):
    """recv() that calls recv_now() again, without sleeping, while it raises `nothing` (no message yet)."""
    def recv():
        while True:
            try:
                return recv_now()
            except nothing:
                pass
    return recv


# ---- Transports: transport(o, how), before the fork, returns open_end(parent: bool) -> End, run by the process
# that uses the end; the parent's closes last and removes what the transport left. Arrays (stream only): send()
# takes a numpy array, recv() returns (its first element, its size in bytes).


def _eshm(o, how):
    """eshm's ESHM. messages: write() / read() (batch: write_many() / read_many()); array: write_array() (one
    copy, into the ring) / read_array() or, view, recv_array() (in place); read_async, to_thread: the asyncio
    client awaits read_async() or asyncio.to_thread(read)."""
    arrays = how in ("array", "view")
    capacity = 1 << ((ARRAY_SLOTS + 1) * (o.size + 4096) - 1).bit_length() if arrays else o.ring_bytes
    def open_end(master):
        import eshm
        wait = "spin" if o.wait == "spin" else "adaptive" if arrays or (master and how != "messages") else o.eshm_wait
        ch = eshm.ESHM(o.name, role="master" if master else "slave", m2s_capacity=capacity, s2m_capacity=capacity,
                       max_reconnect_attempts=100, reconnect_retry_interval_ms=10, wait=wait)
        if how == "messages":
            recv = ch.read if o.size <= 4096 else functools.partial(ch.read, o.size)
            return End(ch.write, recv, ch.close, send_many=ch.write_many, recv_many=ch.read_many)
        if how == "array":
            def recv():
                a = ch.read_array(timeout_ms=-1)
                return float(a[0]), a.nbytes
        elif how == "view":
            def recv():
                with ch.recv_array(timeout_ms=-1) as a:
                    return float(a[0]), a.nbytes
        else:
            import asyncio
            recv = functools.partial(ch.read, None, -1)
            if master:
                recv = ch.read_async if how == "read_async" else functools.partial(asyncio.to_thread, recv)
        return End(ch.write_array if arrays else ch.write, recv, ch.close)
    return open_end


def _ctypes(o, how):
    """The C ABI of libeshm.so ($ESHM_LIBESHM) through ctypes: eshm_write() / eshm_read()."""
    import ctypes as c
    import struct
    lib, name = c.CDLL(os.environ["ESHM_LIBESHM"]), o.name.encode()
    lib.eshm_write.argtypes = [c.c_void_p, c.c_char_p, c.c_size_t, c.c_int]
    lib.eshm_read.argtypes = [c.c_void_p, c.c_void_p, c.c_size_t, c.POINTER(c.c_size_t), c.c_int]
    lib.eshm_last_error.restype = c.c_char_p
    def check(rc):
        if rc != 0:
            raise RuntimeError(f"eshm error {rc}: {lib.eshm_last_error().decode()}")
    def open_end(master):
        cfg = (c.c_char * 96)()  # eshm_config (eshm.h gives the offsets)
        check(lib.eshm_config_init_size(cfg, 96))
        struct.pack_into("<i", cfg, 4, 0 if master else 1)  # role
        struct.pack_into("<ii", cfg, 24, 10, 300)  # reconnect_retry_interval_ms, max_reconnect_attempts
        struct.pack_into("<QQ", cfg, 40, o.ring_bytes, o.ring_bytes)  # m2s, s2m capacity
        if o.wait == "spin":
            struct.pack_into("<i", cfg, 84, 0)  # allow_sleep
        elif o.eshm_wait == "sleep":
            struct.pack_into("<qq", cfg, 64, 0, 0)  # spin_ns, yield_ns
        h, n, buf = c.c_void_p(), c.c_size_t(), c.create_string_buffer(max(4096, o.size))
        check(lib.eshm_open(name, cfg, c.byref(h)))
        write, read, ref, cap = lib.eshm_write, lib.eshm_read, c.byref(n), len(buf)
        def send(m):
            rc = write(h, m, len(m), 30000)
            if rc:
                check(rc)
        def recv():
            rc = read(h, buf, cap, ref, 30000)
            if rc:
                check(rc)
            return buf.raw[:n.value]
        return End(send, recv, lambda: lib.eshm_close(h))
    return open_end


def _mp(o, how):
    """multiprocessing.Pipe: send_bytes() / recv_bytes() (spin: poll() first); queue, faster_fifo:
    multiprocessing.Queue or faster_fifo.Queue, put() / get() (spin: get_nowait())."""
    if how == "pipe":
        pair = multiprocessing.Pipe(duplex=True)
    elif how == "faster_fifo":
        import faster_fifo
        pair = [faster_fifo.Queue(max_size_bytes=IN_FLIGHT_BYTES) for _ in range(2)]
    else:
        pair = [multiprocessing.Queue(o.in_flight) for _ in range(2)]
    def open_end(first):
        mine, other = pair if first else pair[::-1]
        if how != "pipe":  # queues: this end puts into mine, gets from other
            return End(mine.put, _spinning(other.get_nowait, queue.Empty) if o.wait == "spin" else other.get)
        other.close()
        poll, recv = mine.poll, mine.recv_bytes
        def spin():
            while not poll():
                pass
            return recv()
        return End(mine.send_bytes, spin if o.wait == "spin" else recv, mine.close)
    return open_end


def _zmq(o, how):
    """pyzmq over ipc://. messages: PAIR (large messages sent with copy=False); array: PUSH/PULL, send(copy=False,
    track=True) from the array's memory (the sender waits for the tracker before it refills that array) and
    recv(copy=False) wrapped by np.frombuffer; asyncio: the client's PAIR socket is zmq.asyncio's."""
    path = f"{tempfile.gettempdir()}/{o.name}.ipc"
    def open_end(bind):
        import zmq
        if how == "asyncio" and bind:
            import zmq.asyncio
        ctx = zmq.asyncio.Context() if how == "asyncio" and bind else zmq.Context()
        sock = ctx.socket(zmq.PAIR if how != "array" else zmq.PUSH if bind else zmq.PULL)
        if how != "asyncio":
            hwm = o.in_flight if how == "messages" else ARRAY_SLOTS
            for option, value in ((zmq.SNDHWM, hwm), (zmq.RCVHWM, hwm), (zmq.LINGER, 1000)):
                sock.setsockopt(option, value)
        if how == "array":
            sock.setsockopt(zmq.SNDTIMEO, 30_000)
        (sock.bind if bind else sock.connect)(f"ipc://{path}")
        def close():
            sock.close()
            ctx.term()
            if bind and os.path.exists(path):
                os.unlink(path)
        if how == "asyncio":
            return End(sock.send, sock.recv, close, awaits_send=bind)
        if how == "messages":
            send = functools.partial(sock.send, copy=False) if o.size > 4096 else sock.send
            recv = _spinning(functools.partial(sock.recv, zmq.NOBLOCK), zmq.Again) if o.wait == "spin" else sock.recv
            return End(send, recv, close)
        import numpy as np
        trackers = {}
        def send_array(a):
            trackers[id(a)] = sock.send(a, copy=False, track=True)
        def before_refill(a):
            tracker = trackers.pop(id(a), None)
            if tracker is not None:
                tracker.wait(30)
        def recv_array():
            a = np.frombuffer(sock.recv(copy=False).buffer, np.float32)
            return float(a[0]), a.nbytes
        return End(send_array, recv_array, close, before_refill=before_refill)
    return open_end


def _iceoryx2(o, how):
    """iceoryx2's Python binding: a publish-subscribe service per direction, byte slices loaned from the publisher's
    shared memory, filled and sent (a full subscriber buffer makes it wait). blocking adds an event service per
    direction: the sender notifies after each message, a receiver that finds nothing waits in blocking_wait()."""
    prefix, depth = f"eshm_bench/{o.name}", o.in_flight
    def open_end(first):
        import ctypes
        import iceoryx2 as iox
        iox.set_log_level(iox.LogLevel.Error)
        node = iox.NodeBuilder.new().signal_handling_mode(iox.SignalHandlingMode.Disabled).create(iox.ServiceType.Ipc)
        services, ports = [], []  # deleted, and let go of, on close
        def port(out, event, build):  # out: this end's publisher (notifier), else subscriber (listener)
            direction = "a" if out == first else "b"
            builder = node.service_builder(iox.ServiceName.new(f"{prefix}/{direction}{'/event' if event else ''}"))
            if event:
                services.append(builder.event().max_notifiers(1).max_listeners(1).open_or_create())
            else:
                services.append(builder.publish_subscribe(iox.Slice[ctypes.c_uint8]).subscriber_max_buffer_size(depth)
                                .history_size(0).enable_safe_overflow(False).max_publishers(1).max_subscribers(1)
                                .open_or_create())
            ports.append(build(services[-1]).create())
            return ports[-1]
        pub = port(True, False, lambda s: s.publisher_builder().initial_max_slice_len(o.size)
                   .backpressure_strategy(iox.BackpressureStrategy.RetryUntilDelivered))
        sub = port(False, False, lambda s: s.subscriber_builder().buffer_size(depth))
        notify = wait = None
        if o.wait != "spin":
            notify = port(True, True, lambda s: s.notifier_builder()).notify
            wait = port(False, True, lambda s: s.listener_builder()).blocking_wait
        def send(m):
            sample = pub.loan_slice_uninit(len(m))
            ctypes.memmove(sample.payload_ptr, m, len(m))
            sample.assume_init().send()
            if notify is not None:
                notify()
        def recv():
            while True:
                sample = sub.receive()
                if sample is not None:
                    m = ctypes.string_at(sample.payload_ptr, sample.header.number_of_elements)
                    sample.delete()
                    return m
                if wait is not None:
                    wait()  # notifications are kept until collected: none is missed
        def close():
            for p in ports:
                p.delete()
            services.clear()
        return End(send, recv, close)
    return open_end


def _shm_pipe_array(o, how):
    """multiprocessing.shared_memory plus Pipes, the usual hand-made zero-copy path: the sender copies an array into
    a free slot and sends its number; the receiver reads the slot in place and returns it through a second Pipe."""
    import struct
    from multiprocessing import shared_memory
    import numpy as np
    shm = shared_memory.SharedMemory(create=True, size=ARRAY_SLOTS * o.size)
    (data_r, data_w), (free_r, free_w) = multiprocessing.Pipe(duplex=False), multiprocessing.Pipe(duplex=False)
    slot, next_slot, in_flight = struct.Struct("<q"), 0, 0
    def send(a):
        nonlocal next_slot, in_flight
        if in_flight == ARRAY_SLOTS:
            if not free_r.poll(30):
                raise RuntimeError("shared_memory+Pipe: the receiver freed no slot for 30 s")
            free_r.recv_bytes()
            in_flight -= 1
        i, next_slot = next_slot, (next_slot + 1) % ARRAY_SLOTS
        if a.size == 1:
            return data_w.send_bytes(slot.pack(-1 - int(a[0])))  # a marker: its value, negative
        np.copyto(np.ndarray(a.shape, a.dtype, buffer=shm.buf, offset=i * o.size), a)
        in_flight += 1
        data_w.send_bytes(slot.pack(i))
    def recv():
        i = slot.unpack(data_r.recv_bytes())[0]
        if i < 0:
            return float(-1 - i), 4
        first = float(np.ndarray((o.size // 4,), np.float32, buffer=shm.buf, offset=i * o.size)[0])  # in place
        free_w.send_bytes(b"")
        return first, o.size
    return lambda sender: End(send, None, lambda: (shm.close(), shm.unlink())) if sender else End(None, recv, shm.close)


# ---- The two sides of each mode, the parent's and the child's ----


def _stream_writer(end, o, batch=False):
    """Writes both phases; returns how many messages the measured one sent. The clock is read every 64
    messages (batch: every write_many() of 256): the loop around the call is part of what is measured."""
    msg, clock = b"x" * o.size, time.perf_counter
    if batch:
        group, many, send_many = 256, [msg] * 256, end.send_many
        def send_group(n):
            return send_many(many if n == 256 else many[:n], timeout_ms=30000)
    else:
        group, send = 64, end.send
        def send_group(n):
            for _ in range(n):
                send(msg)
            return n
    for seconds, count, marker in o.phases:
        sent = 0
        while sent < count:
            sent += send_group(count - sent)
        if not count and seconds > 0:
            stop = clock() + seconds
            while True:
                sent += send_group(group)
                if clock() >= stop:
                    break
        end.send(marker)
    return sent


def _stream_reader(end, o):
    """Reads past the warm-up marker, then counts messages up to the end marker: (messages, seconds)."""
    size, clock, recv = o.size, time.perf_counter, end.recv
    while True:
        m = recv()
        if len(m) != size:
            break
    if m != _WARM_END:
        raise RuntimeError(f"a message of {len(m)} bytes (expected {size})")
    t0, n = clock(), 0
    while True:  # not `while len(m := recv()) == size`: CPython 3.11 spends ~20 ns more a message on that
        m = recv()
        if len(m) != size:
            break
        n += 1
    if m != _END:
        raise RuntimeError(f"a message of {len(m)} bytes (expected {size})")
    return n, clock() - t0


def _batch_reader(end, o):
    """_stream_reader counting per batch, not per message (the loop is part of what is measured): the warm-up
    marker may sit anywhere in a batch; the end marker is always last, nothing being sent after it."""
    size, clock, recv_many = o.size, time.perf_counter, end.recv_many
    while _WARM_END not in (ms := recv_many(1024, 30000)):
        pass
    t0, ms, n = clock(), ms[ms.index(_WARM_END) + 1:], 0
    while not ms or len(ms[-1]) == size:
        n += len(ms)
        ms = recv_many(1024, 30000)
    if ms[-1] != _END:
        raise RuntimeError(f"a message of {len(ms[-1])} bytes (expected {size})")
    return n + len(ms) - 1, clock() - t0


def _array_writer(end, o):
    """Sends arrays in turn (the first element: the sequence number modulo 1000) for both phases; a marker is
    a 1-element array. Returns how many the measured phase sent."""
    import numpy as np
    arrays = [np.arange(o.size // 4, dtype=np.float32) for _ in range(2 * ARRAY_SLOTS)]
    before_refill, k = end.before_refill, 0
    for seconds, count, marker in o.phases:
        sent, stop = 0, time.perf_counter() + seconds
        while count == 0 and seconds > 0 or sent < count:
            a = arrays[k % len(arrays)]
            k += 1
            if before_refill is not None:
                before_refill(a)
            a[0] = sent % 1000
            end.send(a)
            sent += 1
            if not count and sent % 8 == 0 and time.perf_counter() >= stop:
                break
        end.send(np.full(1, 1 if marker == _END else 0, np.float32))
    return sent


def _array_reader(end, o):
    while end.recv()[1] == o.size:
        pass
    t0, n = time.perf_counter(), 0
    while True:
        first, nbytes = end.recv()
        if nbytes != o.size:
            return n, time.perf_counter() - t0
        if first != n % 1000:
            raise RuntimeError(f"array {n} carries {first}: arrays lost, reordered or overwritten")
        n += 1


def _pingpong_client(end, o):
    """Round trips of both phases; returns the measured phase's, in nanoseconds."""
    msg, size, now, send, recv = b"x" * o.size, o.size, time.perf_counter_ns, end.send, end.recv
    samples = array.array("Q")
    for phase, (seconds, count, _) in enumerate(o.phases):
        record = samples.append if phase == 1 else (lambda ns: None)
        stop, t = now() + int(seconds * 1e9), now()
        for _ in (range(count) if count else iter(int, 1)):  # count round trips, or until the clock says
            send(msg)
            if len(recv()) != size:
                raise RuntimeError("an echo of the wrong size")
            t2 = now()
            record(t2 - t)
            t = t2
            if not count and t >= stop:
                break
    send(_END)
    return samples


def _async_client(end, o):
    """_pingpong_client on an asyncio event loop: each echo (and zmq.asyncio's send) awaited."""
    import asyncio
    async def round_trips():
        msg, now, samples = b"x" * o.size, time.perf_counter_ns, array.array("Q")
        awaits_send = end.awaits_send
        for phase, (seconds, count, _) in enumerate(o.phases):
            done, stop = 0, now() + int(seconds * 1e9)
            t = now()
            while count == 0 and t < stop or done < count:
                sent = end.send(msg)
                if awaits_send:
                    await sent
                if len(await end.recv()) != o.size:
                    raise RuntimeError("an echo of the wrong size")
                t2 = now()
                if phase == 1:
                    samples.append(t2 - t)
                t, done = t2, done + 1
        sent = end.send(_END)
        if awaits_send:
            await sent
        return samples
    return asyncio.run(round_trips())


def _echo(end, o):
    send, recv = end.send, end.recv
    while True:
        m = recv()
        if len(m) != o.size:
            return 0, 0.0
        send(m)


# A transport's kind: the sides (parent, child) of each mode it runs, and the waits it runs.
_ANY, _BLOCKING = ("spin", "blocking"), ("blocking",)
_MESSAGES = ({"stream": (_stream_writer, _stream_reader), "pingpong": (_pingpong_client, _echo)}, _ANY)
_BATCH = ({"stream": (functools.partial(_stream_writer, batch=True), _batch_reader)}, _ANY)
_ARRAYS = ({"stream": (_array_writer, _array_reader)}, _BLOCKING)
_ASYNC = ({"pingpong": (_async_client, _echo)}, _BLOCKING)
# name -> (transport, how, kind, modules to import, what it measures)
TRANSPORTS = {
    "py_eshm": (_eshm, "messages", _MESSAGES, ["eshm"], "eshm: ESHM.write() / read()"),
    "py_eshm_batch": (_eshm, "messages", _BATCH, ["eshm"], "eshm: write_many() / read_many()"),
    "py_ctypes": (_ctypes, "", _MESSAGES, [], "libeshm.so's eshm_write() / eshm_read() through ctypes"),
    "py_pipe": (_mp, "pipe", _MESSAGES, [], "multiprocessing.Pipe: send_bytes() / recv_bytes()"),
    "py_queue": (_mp, "queue", _MESSAGES, [], "multiprocessing.Queue: put() / get()"),
    "py_faster_fifo": (_mp, "faster_fifo", _MESSAGES, ["faster_fifo"], "faster_fifo.Queue: put() / get()"),
    "py_zmq": (_zmq, "messages", _MESSAGES, ["zmq"], "pyzmq PAIR over ipc://"),
    "py_iceoryx2": (_iceoryx2, "", _MESSAGES, ["iceoryx2"], "iceoryx2 publish-subscribe (Python binding)"),
    "py_eshm_array": (_eshm, "array", _ARRAYS, ["eshm", "numpy"], "float32 arrays: write_array() / read_array()"),
    "py_eshm_array_view": (_eshm, "view", _ARRAYS, ["eshm", "numpy"],
                           "float32 arrays: write_array() / recv_array() (in place)"),
    "py_shm_pipe_array": (_shm_pipe_array, "", _ARRAYS, ["numpy"],
                          "float32 arrays: multiprocessing.shared_memory slots + Pipe"),
    "py_zmq_array": (_zmq, "array", _ARRAYS, ["numpy", "zmq"], "float32 arrays: pyzmq copy=False"),
    "py_eshm_read_async": (_eshm, "read_async", _ASYNC, ["eshm"], "asyncio client: await read_async()"),
    "py_eshm_to_thread": (_eshm, "to_thread", _ASYNC, ["eshm"], "asyncio client: await asyncio.to_thread(read)"),
    "py_zmq_asyncio": (_zmq, "asyncio", _ASYNC, ["zmq"], "asyncio client: zmq.asyncio PAIR over ipc://"),
}


def unavailable_reason(name, o=None):
    """Why transport `name` cannot run here (given o: o's combination), or "" when it can."""
    sides, waits = TRANSPORTS[name][2]
    if o is not None and (o.mode not in sides or o.wait not in waits):
        return f"{name} runs only {' and '.join(sides)}, with {' or '.join(waits)} waits"
    if o is not None and sides is _ARRAYS[0] and o.size % 4:
        return f"{name}: float32 arrays take sizes that are multiples of 4, not {o.size}"
    for module in TRANSPORTS[name][3]:
        try:
            __import__(module)
        except ImportError:
            return f"{name}: {module} is not importable (pip install {module.replace('_', '-')})"
    if name == "py_ctypes" and not os.path.isfile(os.environ.get("ESHM_LIBESHM", "")):
        return "py_ctypes: $ESHM_LIBESHM does not name libeshm.so (bazel build --config=bench //eshm:libeshm.so)"
    return ""


def run_peer(o):
    """One run of o.peer (which unavailable_reason(o.peer, o) allows): (messages, seconds, round trips or None)."""
    transport, how, (sides, _) = TRANSPORTS[o.peer][:3]
    (parent_side, child_side), open_end = sides[o.mode], transport(o, how)
    ends = [open_end(True)] if transport is _eshm else []  # an eshm master exists before its slave attaches
    to_parent, to_child = multiprocessing.Pipe()
    pid = os.fork()
    if pid == 0:  # the child: opens its end, says so, runs its side, reports, waits until the parent is done
        code, end = 1, None
        try:
            if o.cpus:
                os.sched_setaffinity(0, {o.cpus[1]})
            end = open_end(False)
            to_parent.send(("ok", None))
            to_parent.send(("ok", child_side(end, o)))
            to_parent.poll(60)
            code = 0
        except BaseException as e:  # reported to the parent, which fails the run
            to_parent.send(("error", f"{type(e).__name__}: {e}"))
        finally:
            try:
                if end is not None:
                    end.close()
            finally:
                os._exit(code)
    def from_child(timeout_s, late):
        status, value = to_child.recv() if to_child.poll(timeout_s) else ("error", f"{late} within {timeout_s} s")
        if status != "ok":
            raise RuntimeError(f"{o.peer}: the child process failed: {value}")
        return value
    try:
        if o.cpus:
            os.sched_setaffinity(0, {o.cpus[0]})
        ends = ends or [open_end(True)]
        from_child(60, "it did not start")
        result = parent_side(ends[0], o)
        child_result = from_child(120, "it did not finish")
        to_child.send("done")
        if o.mode == "pingpong":
            return len(result), sum(result) / 1e9, result
        if child_result[0] != result:
            raise RuntimeError(f"{o.peer}: the writer sent {result} messages, the reader counted {child_result[0]}")
        return (*child_result, None)
    except BaseException:
        os.kill(pid, 9)
        raise
    finally:
        os.waitpid(pid, 0)
        for end in ends:
            end.close()


def _parse_peer(argv):
    ap = argparse.ArgumentParser(prog="python -m eshm.bench --peer=NAME")
    ap.add_argument("--peer", required=True, choices=sorted(TRANSPORTS))
    ap.add_argument("--mode", choices=["stream", "pingpong"], required=True)
    ap.add_argument("--wait", choices=["spin", "blocking"], required=True)
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--warmup_s", type=float, default=0.1)
    ap.add_argument("--duration_s", type=float, default=1.0)
    ap.add_argument("--messages", type=int, default=0, help="measured messages (0: --duration_s)")
    ap.add_argument("--eshm_wait", choices=["sleep", "adaptive"], default="sleep", help="eshm's blocking waits")
    ap.add_argument("--cpus", type=lambda s: [int(c) for c in s.split(",")], help="A,B: parent on A, child on B")
    ap.add_argument("--samples", help="pingpong: where the round trips go")
    ap.add_argument("--name", help="of the run's channels and files (default: one of this process)")
    o = ap.parse_args(argv)
    if o.cpus and len(o.cpus) != 2:
        ap.error("--cpus takes two CPU numbers: A,B")
    if o.size < 8 or o.messages < 0 or o.warmup_s < 0 or (o.duration_s <= 0 and not o.messages):
        ap.error("--size must be >= 8, --messages and --warmup_s >= 0, --duration_s > 0")
    if o.mode == "pingpong" and not o.samples:
        ap.error("pingpong needs --samples=PATH")
    # What transports and sides share: a name, eshm's rings as eshm-bench's C++ transports' (at least 1 MiB, four
    # of the largest message, a power of two), the other queues' depth, (seconds, messages or 0, marker) of the
    # warm-up and the measured phase.
    o.name = o.name or f"eshmbench_py_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    o.ring_bytes = 1 << (max(1 << 20, 4 * (o.size + 64)) - 1).bit_length()
    o.in_flight = max(16, IN_FLIGHT_BYTES // (o.size + 64))
    o.phases = ((o.warmup_s, 0, _WARM_END), (o.duration_s, o.messages, _END))
    return o


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--peer-list"]:
        for name, entry in TRANSPORTS.items():
            print(f"{name}\t{unavailable_reason(name) or 'ok'}\t{entry[4]}")
        return 0
    if any(a.startswith("--peer") for a in argv):
        o = _parse_peer(argv)
        # SIGTERM (eshm-bench stopping the run) unwinds both processes through their ends' close().
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        reason = unavailable_reason(o.peer, o)
        if reason:
            print(reason, file=sys.stderr)
            return UNSUPPORTED
        messages, seconds, samples = run_peer(o)
        if samples is not None:
            with open(o.samples, "wb") as f:
                samples.tofile(f)
        print(f"messages={messages} seconds={seconds:.9f}")
        return 0
    i = next((i for i, a in enumerate(argv) if a.startswith("--eshm-bench=")), None)
    if i is not None:
        tool = argv.pop(i).split("=", 1)[1]
    else:
        beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")  # Bazel's runfiles
        candidates = [os.environ.get("ESHM_BENCH"), shutil.which("eshm-bench"),
                      os.path.join(beside, "benchmarks", "eshm_bench", "eshm-bench"),
                      os.path.join("bazel-bin", "benchmarks", "eshm_bench", "eshm-bench")]
        tool = next((os.path.normpath(c) for c in candidates if c and os.access(c, os.X_OK)), None)
    if tool is None or not os.access(tool, os.X_OK):
        print(f"python -m eshm.bench runs eshm-bench, the C++ benchmark tool, and "
              f"{'did not find it' if tool is None else 'found no program at ' + tool}: build it with\n"
              "  bazel build --config=bench //benchmarks:eshm-bench\n"
              "and pass --eshm-bench=bazel-bin/benchmarks/eshm_bench/eshm-bench (or set $ESHM_BENCH).",
              file=sys.stderr)
        return 2
    import eshm  # the peers eshm-bench starts import this interpreter's eshm, wherever it was found
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(eshm.__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    if not any(a.startswith("--compare") for a in argv):
        argv.append("--compare=python")
    # eshm-bench records its argv as the command that reproduces a result, which must not name this machine's
    # directories: the tool relative to the working directory when below it, the interpreter by its command
    # name when PATH finds the same one under it.
    relative, python = os.path.relpath(tool), os.path.basename(sys.executable)
    found = shutil.which(python)
    if found is None or os.path.realpath(found) != os.path.realpath(sys.executable):
        python = sys.executable
    os.execv(tool, [tool if relative.startswith("..") else relative, f"--python={python}", *argv])


if __name__ == "__main__":
    sys.exit(main())
