"""numpy arrays over a channel: one message per array, carrying its dtype and shape (ESHM.write_array,
ESHM.read_array, ESHM.recv_array). numpy is imported only when one of them is called.

A message made by write_array() is a header, then the array's bytes in C order:

     0      4     5     6        8                8 + 8 x ndim              data offset (a multiple of 16)
    +------+-----+-----+--------+-----------------+-----------------+-------+------------------------------+
    | ENDA | ver | ndim| dlen   | shape[0..ndim)  | dtype (dlen     | zeros | the elements, C order        |
    |      | = 1 |     | (u16)  | (u64 each)      |  ASCII bytes)   |       | (shape product x itemsize)   |
    +------+-----+-----+--------+-----------------+-----------------+-------+------------------------------+

All integers are little-endian. The dtype is numpy's dtype.str ('<f4', '|u1', '<M8[ns]') or, for a
structured dtype, 's' followed by the repr of its .npy description (numpy.lib.format.dtype_to_descr),
read back with ast.literal_eval. Arrays holding Python objects are refused: pointers mean nothing in another
process. Ring records are 16-byte aligned and the header is padded to 16 bytes, so the elements start
16-byte aligned in the ring.
"""

import ast
import struct
import sys

from eshm.errors import ESHMError, NotAnArrayError

MAGIC = b"ENDA"
VERSION = 1
ALIGN = 16
MAX_NDIM = 64
_FIXED = struct.Struct("<4sBBH")


def numpy():
    """The numpy module, imported on first use; an ImportError that says why it is needed."""
    try:
        import numpy as np
    except ImportError as e:
        raise ImportError("eshm's array calls (write_array, read_array, recv_array) need numpy: "
                          "pip install numpy") from e
    return np


def _descr(np, dtype):
    if dtype.hasobject:
        raise TypeError(f"cannot send an array of dtype {dtype}: it holds Python objects (pointers into this "
                        "process); convert it to a numeric, string or structured dtype first")
    if dtype.fields is None and dtype.subdtype is None:
        return dtype.str.encode("ascii")
    return b"s" + repr(np.lib.format.dtype_to_descr(dtype)).encode("ascii")


def header(np, array):
    """The message header for `array` (an ndarray), padded to a multiple of ALIGN."""
    if array.ndim > MAX_NDIM:
        raise ValueError(f"arrays of more than {MAX_NDIM} dimensions are not supported")
    descr = _descr(np, array.dtype)
    head = _FIXED.pack(MAGIC, VERSION, array.ndim, len(descr)) + struct.pack(f"<{array.ndim}Q", *array.shape)
    head += descr
    return head + b"\0" * (-len(head) % ALIGN)


def _not_an_array(what):
    return NotAnArrayError(f"the message is not an array written by write_array(): {what}; it stays queued "
                           "(read it with read())", ESHMError.INVALID_PARAM)


def parse(np, message):
    """(dtype, shape, data offset) of a write_array() message (a buffer); NotAnArrayError if it is not one."""
    size = len(message)
    if size < _FIXED.size:
        raise _not_an_array(f"{size} bytes, shorter than the header")
    magic, version, ndim, dlen = _FIXED.unpack_from(message, 0)
    if magic != MAGIC:
        raise _not_an_array(f"it starts with {bytes(message[:4])!r}, not {MAGIC!r}")
    if version != VERSION:
        raise _not_an_array(f"header version {version}; this eshm reads version {VERSION}")
    end = _FIXED.size + 8 * ndim + dlen
    offset = end + (-end % ALIGN)
    if ndim > MAX_NDIM or offset > size:
        raise _not_an_array(f"a header of {offset} bytes in a message of {size}")
    shape = struct.unpack_from(f"<{ndim}Q", message, _FIXED.size)
    descr = bytes(message[_FIXED.size + 8 * ndim:end])
    try:
        text = descr.decode("ascii")
        dtype = np.dtype(np.lib.format.descr_to_dtype(ast.literal_eval(text[1:])) if text.startswith("s")
                         else text)
    except (ValueError, TypeError, SyntaxError) as e:
        raise _not_an_array(f"dtype {descr!r} is not understood ({e})") from None
    if dtype.hasobject:
        raise _not_an_array(f"dtype {dtype} holds Python objects")
    count = 1
    for n in shape:
        count *= n
    if offset + count * dtype.itemsize != size:
        raise _not_an_array(f"shape {shape} of {dtype} needs {count * dtype.itemsize} bytes after the "
                            f"{offset}-byte header, the message has {size - offset}")
    return dtype, shape, offset


def write_array(channel, array, timeout_ms):
    """ESHM.write_array: one copy, from the array (any layout) straight into the ring."""
    np = numpy()
    a = np.asarray(array)
    head = header(np, a)
    h = len(head)
    with channel.claim(h + a.nbytes, timeout_ms) as mv:
        mv[:h] = head
        if a.nbytes:
            # frombuffer, not ndarray(buffer=mv): numpy's constructor keeps no buffer export of mv, so the
            # claim could not count it.
            dest = np.frombuffer(mv, a.dtype, a.size, h).reshape(a.shape)
            np.copyto(dest, a, casting="no")
            del dest  # before the claim ends: nothing made from it outlives the message


def read_array(channel, timeout_ms):
    """ESHM.read_array: a new array owning its memory (one copy, from the ring)."""
    np = numpy()
    view = channel.recv_view(timeout_ms)
    try:
        with view as mv:
            try:
                dtype, shape, offset = parse(np, mv)
            except NotAnArrayError:
                view._put_back()
                raise
            out = np.empty(shape, dtype)
            if out.nbytes:
                src = np.frombuffer(mv, dtype, out.size, offset)
                np.copyto(out.reshape(-1), src)
                del src
        return out
    finally:
        if not view.ended:
            view.release()


class ArrayView:
    """An array received in place in the ring (from ESHM.recv_array()): ``with ch.recv_array() as a:`` gives
    a read-only ndarray of the message's bytes, with its dtype and shape, and no copy.

    The array is valid inside the with block only: when the block ends the message is given back to the
    writer, who reuses its room. If the array (or a view of it: a slice, a reshape, np.asarray) is still
    referenced from anywhere but the with statement's own variable, ending the block raises BufferError
    and the message stays in the ring, with this side's reads refused, until the last such reference goes;
    keep ``a.copy()`` instead. The with statement's variable itself still names the array after the block:
    do not use it there (its memory stays mapped, so nothing crashes, but its contents are undefined).
    """

    __slots__ = ("_view", "_array", "_root")

    def __init__(self, view, root, array):
        self._view = view
        self._root = root  # the array numpy made over the buffer: every view of `array` refers to it
        self._array = array

    def __enter__(self):
        if self._array is None:
            raise ValueError("the ArrayView has ended")
        return self._array

    def __exit__(self, exc_type, exc, tb):
        self.release()
        return False

    @property
    def ended(self):
        """True once the message was given back to the writer (or is, with the last reference)."""
        return self._array is None

    def release(self):
        """Gives the message back to the writer; BufferError if the array is referenced elsewhere (above)."""
        array, root = self._array, self._root
        if array is None:
            return
        self._array = self._root = None
        # References to `array` now: this frame's, getrefcount's argument, and at most the with statement's
        # variable. To `root`: this frame's, getrefcount's argument and array.base; any view of the array
        # (a slice, a reshape, a transpose) adds one, as numpy points views at the array owning the buffer.
        kept = sys.getrefcount(array) > 3 or sys.getrefcount(root) > 3
        del array, root
        if kept:
            self._view.release()  # BufferError; the message goes with the last reference
        else:
            self._view._release_detaching()

    def __repr__(self):
        return f"<ArrayView {'ended' if self._array is None else 'of ' + repr(self._view)}>"

    def __reduce__(self):
        raise TypeError("cannot pickle ArrayView: it is a message in place in a channel's shared memory; "
                        "pickle an array copy (a.copy()) instead")


def recv_array(channel, timeout_ms):
    """ESHM.recv_array: an ArrayView of the next message, in place."""
    np = numpy()
    view = channel.recv_view(timeout_ms)
    try:
        mv = view.__enter__()
        try:
            dtype, shape, offset = parse(np, mv)
        except NotAnArrayError:
            view._put_back()
            raise
        count = 1
        for n in shape:
            count *= n
        root = np.frombuffer(mv, dtype, count, offset)
        return ArrayView(view, root, root.reshape(shape))
    except BaseException:
        if not view.ended:
            view.release()
        raise
