# Part of _eshm.pyx (included there): zero-copy views of a message in the ring (MessageView, Claim),
# exported through the buffer protocol.

cdef char* BYTE_FORMAT = "B"

cdef enum:
    VIEW_ACTIVE = 0
    VIEW_ENDED = 1


@cython.no_gc_clear  # __dealloc__ needs _channel to end the message (the object can be in a cycle with _mv)
cdef class _RingBuffer:
    """A message in place in a channel's ring, exported through the buffer protocol (see MessageView, Claim).

    Counts the buffers it exports; the message ends (released, committed or aborted) only when none is left,
    because the ring reuses its memory and close() unmaps it.
    """

    cdef Channel _channel
    cdef char* _ptr
    cdef Py_ssize_t _len
    cdef Py_ssize_t _itemsize
    cdef bint _writable
    cdef int _exports
    cdef int _state
    cdef bint _end_pending      # ended while exported: finish with the last buffer's release
    cdef bint _detached         # finished while exported: the channel keeps the memory mapped for them
    cdef shared_ptr[void] _pin  # while detached: the claim's mapping, kept even if the channel moves
    cdef size_t _commit_size
    cdef int _commit_result     # what the engine's Commit returned (R_LOST: the claim was not sent)
    cdef object _mv             # the memoryview __enter__ returned

    cdef void _start(self, Channel channel, char* ptr, size_t size, bint writable):
        self._channel = channel
        self._ptr = ptr
        self._len = size
        self._itemsize = 1
        self._writable = writable
        self._commit_size = size
        self._state = VIEW_ACTIVE

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        if self._state != VIEW_ACTIVE:
            raise ValueError(f"{type(self).__name__} has ended: its message is no longer in the ring")
        if (flags & PyBUF_WRITABLE) and not self._writable:
            raise BufferError("a received message is read-only")
        buffer.buf = self._ptr
        buffer.obj = self
        buffer.len = self._len
        buffer.readonly = not self._writable
        buffer.itemsize = 1
        buffer.format = NULL
        if flags & PyBUF_FORMAT:
            buffer.format = BYTE_FORMAT
        buffer.ndim = 1
        buffer.shape = &self._len if (flags & PyBUF_ND) else NULL
        buffer.strides = &self._itemsize if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        buffer.suboffsets = NULL
        buffer.internal = NULL
        self._exports += 1

    def __releasebuffer__(self, Py_buffer* buffer):
        self._exports -= 1
        if self._exports == 0:
            if self._end_pending:
                self._finish(False)
            if self._detached:
                self._detached = False
                self._pin.reset()
                self._channel._detached_released()

    cdef int _detach(self, bint commit) except -1:
        """Ends the message now although buffers made from it are alive: they keep pointing at its bytes in the
        ring, which the channel keeps mapped (even through close()) until the last of them is released."""
        if self._mv is not None:
            mv = self._mv
            self._mv = None
            try:
                mv.release()
            except BufferError:
                pass
        cdef CChannel* ch = self._channel._ch.get()
        if self._exports > 0:
            self._detached = True
            self._channel._detached += 1
            if self._writable and ch != NULL:
                # Before the claim ends: its buffers must stay mapped even if the channel moves to another segment.
                self._pin = ch.PinClaimMemory()
        self._commit_result = R_OK
        self._finish(commit)
        if self._commit_result != R_OK and ch != NULL:
            # The channel moved to a new segment that could not take this claim (or messages staged before it).
            check_status(StatusOfResult(ch[0], self._commit_result), OP_WRITE, self._channel._role)
        return 0

    def __reduce__(self):
        raise TypeError(f"cannot pickle {type(self).__name__}: it is a message in place in a channel's shared "
                        "memory; pickle bytes(view) instead")

    cdef int _finish(self, bint commit, bint keep=False) noexcept:
        """Ends the message (no buffer may be exported): release (or, with keep, leave it queued), commit or
        abort; frees the side's lock. Returns the release's IoResult code (R_OK, or R_CORRUPT if the segment
        was truncated meanwhile)."""
        cdef int released = R_OK
        if self._state != VIEW_ACTIVE:
            return R_OK
        self._state = VIEW_ENDED
        self._end_pending = False
        cdef Channel channel = self._channel
        cdef CChannel* ch = channel._ch.get()
        if self._writable:
            if ch != NULL and not channel._disowned:
                if commit:
                    self._commit_result = IoResultCode(ch.Commit(self._commit_size))
                else:
                    ch.Abort()
            channel._wview = NULL
            channel._wview_thread = 0
            PyThread_release_lock(channel._wlock)
        else:
            if ch != NULL and not channel._disowned and not keep:
                released = IoResultCode(ch.Release())
            channel._rview = NULL
            channel._rview_thread = 0
            PyThread_release_lock(channel._rlock)
        return released

    cdef int _end(self, bint commit) except -1:
        if self._state != VIEW_ACTIVE:
            return 0
        if self._mv is not None:
            mv = self._mv
            self._mv = None
            try:
                mv.release()
            except BufferError:
                pass  # buffers made from it still count in _exports
        if self._exports > 0:
            self._end_pending = True
            what = "aborted" if self._writable else "released"
            raise BufferError(
                f"{self._exports} buffer(s) made from the {type(self).__name__} are still alive (slices, "
                f"numpy arrays...): release them; the message is {what} with the last one")
        self._commit_result = R_OK
        cdef int released = self._finish(commit)
        cdef Channel channel = self._channel
        cdef CChannel* ch = channel._ch.get()
        if ch == NULL:
            return 0
        if released != R_OK:
            # The segment was truncated while the view was held: what was read from it may be zeros.
            check_status(StatusOfResult(ch[0], released), OP_READ, channel._role)
        if self._commit_result != R_OK:
            # The channel moved to a new segment that could not take this claim (or messages staged before it).
            check_status(StatusOfResult(ch[0], self._commit_result), OP_WRITE, channel._role)
        return 0

    def __dealloc__(self):
        # No buffer can be exported (each holds a reference to self).
        self._finish(False)

    def __len__(self):
        return self._len

    @property
    def ended(self):
        """True once the message was released, committed or aborted."""
        return self._state != VIEW_ACTIVE

    def __enter__(self):
        if self._state != VIEW_ACTIVE:
            raise ValueError(f"{type(self).__name__} has ended")
        if self._mv is None:
            self._mv = memoryview(self)
        return self._mv

    def __repr__(self):
        state = "ended" if self._state != VIEW_ACTIVE else f"{self._exports} buffer(s) exported"
        return f"<{type(self).__name__} of {self._len} bytes on channel {self._channel.name!r}, {state}>"


cdef class MessageView(_RingBuffer):
    """A received message in place in the ring (from Channel.recv_view()); a read-only buffer.

    ``with view as mv`` gives a read-only memoryview and releases the message at the end of the block.
    """

    def release(self):
        """Gives the message's room back to the writer. BufferError if buffers made from it are alive."""
        self._end(False)

    def _put_back(self):
        """Ends the view and leaves the message queued: the next read gets it again. BufferError if buffers
        made from it are alive."""
        if self._state != VIEW_ACTIVE:
            return
        if self._mv is not None:
            mv = self._mv
            self._mv = None
            mv.release()
        if self._exports > 0:
            raise BufferError(f"{self._exports} buffer(s) made from the MessageView are still alive")
        self._finish(False, True)

    def _release_detaching(self):
        """Releases the message now, even if buffers made from it are alive (for ArrayView, which checked that
        only its own array, no longer reachable except through the with statement's variable, holds one)."""
        self._detach(False)

    def __exit__(self, exc_type, exc, tb):
        self._end(False)
        return False


cdef class Claim(_RingBuffer):
    """Room for a message being written in place in the ring (from Channel.claim()); a writable buffer.

    ``with claim as mv`` gives a writable memoryview; a normal exit commits (sends) the message, an exception
    aborts it. commit(n) sends only the first n bytes. Buffers made from mv that outlive the block (a numpy
    array) do not stop it: see commit().
    """

    def commit(self, nbytes=None):
        """Sends the message: its first `nbytes` bytes (None: all of them), as they are now.

        Buffers made from the claim that are still alive (a numpy array from np.frombuffer(mv)) stay valid
        memory, but the message belongs to the reader from now on: never write them again (the reader may be
        reading, and once it is done the ring reuses the space for later messages), nor trust what they show.
        """
        if self._state != VIEW_ACTIVE:
            raise ValueError("the claim has ended")
        if nbytes is not None:
            if not (0 <= nbytes <= self._len):
                raise _errors.InvalidParameterError(
                    f"nbytes is {nbytes}; it must be between 0 and the claimed {self._len}", E_INVALID_PARAM)
            self._commit_size = nbytes
        self._detach(True)

    def abort(self):
        """Drops the message: nothing is sent (buffers still alive: as commit() says)."""
        self._detach(False)

    def __exit__(self, exc_type, exc, tb):
        self._detach(exc_type is None)
        return False
