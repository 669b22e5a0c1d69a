#!/usr/bin/env python3
"""Writes the seed corpora of the eshm fuzzers: fuzz/corpus/segment_open/ and fuzz/corpus/ring_reader/.

Usage: python3 fuzz/make_corpus.py   (rewrites the seed files; deterministic)

The bytes follow eshm/layout.h: a 384-byte SegmentHeader (magic "ESHMSEG\\0", layout version 2, header_bytes
384, sizes from ComputeGeometry), then per direction a 384-byte RingControl and the ring data, made of
16-byte-aligned records (commit = position + 1 as u64, length u32, kind u32 "DATA"/"PADD", payload), then zeros
up to the next multiple of 64 KiB and the 128-byte trailer ending in the canary "ESHMEND!".
"""
import os
import struct

MAGIC = 0x004745534D485345
VERSION = 2
HEADER_BYTES = 384
CONTROL_BYTES = 384
TRAILER_ALIGNMENT = 65536
TRAILER_BYTES = 128
CANARY = 0x21444E454D485345  # "ESHMEND!"
KIND_DATA = 0x44415441
KIND_PADDING = 0x50414444
HERE = os.path.dirname(os.path.abspath(__file__))


def record_bytes(payload):
    return (16 + payload + 15) & ~15


def geometry(m2s, s2m):
    off0 = HEADER_BYTES
    off1 = off0 + CONTROL_BYTES + m2s
    rings_end = off1 + CONTROL_BYTES + s2m
    trailer = (rings_end + TRAILER_ALIGNMENT - 1) // TRAILER_ALIGNMENT * TRAILER_ALIGNMENT
    return off0, off1, trailer + TRAILER_BYTES


def control(head=0, tail=0, messages_read=0, messages_written=0):
    c = bytearray(CONTROL_BYTES)
    struct.pack_into("<QQ", c, 0, tail, messages_written)
    struct.pack_into("<QQQ", c, 128, head, messages_read, head)
    return c


def ring_data(capacity, records, start=0):
    """records: list of (kind, payload bytes or padding length, commit override or None), laid out from
    stream position `start`. Returns (data, end position)."""
    data = bytearray(capacity)
    pos = start
    for kind, payload, commit in records:
        off = pos % capacity
        if kind == KIND_PADDING:
            length = payload if isinstance(payload, int) else capacity - off - 16
            size = capacity - off
            body = b""
        else:
            length = len(payload)
            size = record_bytes(length)
            body = payload
        struct.pack_into("<QII", data, off, pos + 1 if commit is None else commit, length, kind)
        data[off + 16:off + 16 + len(body)] = body
        pos += size
    return data[:capacity], pos


def data_records(sizes):
    return [(KIND_DATA, bytes((i * 7 + j) & 0xFF for j in range(n)), None) for i, n in enumerate(sizes)]


def segment(m2s=4096, s2m=4096, max_message=None, rings=None, canary=CANARY, **overrides):
    off0, off1, total = geometry(m2s, s2m)
    if max_message is None:
        max_message = min(m2s, s2m) // 2 - 16
    h = bytearray(HEADER_BYTES)
    fields = dict(magic=MAGIC, version=VERSION, header_bytes=HEADER_BYTES, segment_bytes=total,
                  epoch=1_700_000_000_000_000_000, off0=off0, off1=off1, cap0=m2s, cap1=s2m,
                  max_message=max_message, pid=4242)
    fields.update(overrides)
    struct.pack_into("<QIIQQQQQQII", h, 0, fields["magic"], fields["version"], fields["header_bytes"],
                     fields["segment_bytes"], fields["epoch"], fields["off0"], fields["off1"], fields["cap0"],
                     fields["cap1"], fields["max_message"], fields["pid"])
    body = bytearray(total - HEADER_BYTES)
    for d, (cap, off) in enumerate(((m2s, off0), (s2m, off1))):
        if rings and rings[d]:
            ctl, data = rings[d]
            body[off - HEADER_BYTES:off - HEADER_BYTES + CONTROL_BYTES] = ctl
            body[off - HEADER_BYTES + CONTROL_BYTES:off - HEADER_BYTES + CONTROL_BYTES + cap] = data
    struct.pack_into("<Q", body, len(body) - 8, canary)
    return bytes(h + body)


def write(directory, name, content):
    path = os.path.join(HERE, "corpus", directory)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, name), "wb") as f:
        f.write(content)


def segment_seeds():
    d0, end0 = ring_data(4096, data_records([0, 1, 16, 100, 2032]))
    ring0 = (control(tail=end0), d0)
    # Ring 1: the head near the end of the data area, a padding record, then messages from offset 0.
    start = 4096 * 3 + 4096 - 64
    d1, end1 = ring_data(4096, [(KIND_DATA, b"x" * 20, None), (KIND_PADDING, None, None)] + data_records([5, 50]),
                         start=start)
    ring1 = (control(head=start, tail=end1, messages_read=9), d1)
    good = segment(rings=(ring0, ring1))
    write("segment_open", "valid_empty_4k", segment())
    write("segment_open", "valid_messages_4k", good)
    write("segment_open", "valid_asymmetric_4k_8k", segment(4096, 8192, max_message=100,
                                                             rings=(ring0, None)))
    write("segment_open", "bad_magic", segment(magic=0x1122334455667788))
    write("segment_open", "no_magic_versioned", segment(magic=0))
    write("segment_open", "uninitialized_version0", segment(version=0))
    write("segment_open", "future_version", segment(version=VERSION + 1))
    write("segment_open", "trailer_missing", segment(canary=0))
    write("segment_open", "bad_header_bytes", segment(header_bytes=256))
    write("segment_open", "capacity_not_power_of_two", segment(cap0=4000))
    write("segment_open", "offsets_mismatch", segment(off1=384 + 384 + 2048))
    write("segment_open", "size_mismatch", segment(segment_bytes=99999))
    write("segment_open", "max_message_zero", segment(max_message=0))
    write("segment_open", "max_message_too_big", segment(max_message=4096))
    write("segment_open", "truncated", good[:5000])
    write("segment_open", "header_only", good[:HEADER_BYTES])
    write("segment_open", "too_small", good[:100])
    write("segment_open", "empty", b"")
    bad, _ = ring_data(4096, [(KIND_DATA, b"abc", None), (KIND_DATA, b"", None)])
    struct.pack_into("<I", bad, 32 + 8, 60000)  # second record's length beyond the maximum
    write("segment_open", "corrupt_record_length", segment(rings=((control(), bad), (control(head=8), d1))))


def ring_seed(selector, ctl, data):
    return bytes([selector]) + bytes(ctl) + bytes(data)


def ring_seeds():
    for selector in (0, 2, 4, 6):
        d, end = ring_data(4096, data_records([0, 1, 15, 16, 17, 100, 2032]))
        write("ring_reader", "committed_mode%d" % (selector >> 1), ring_seed(selector, control(tail=end), d))
    start = 8192 * 5 + 8192 - 48
    d, end = ring_data(8192, [(KIND_DATA, b"y" * 10, None), (KIND_PADDING, None, None)] + data_records([3, 4000]),
                       start=start)
    write("ring_reader", "wrap_padding_8k", ring_seed(1, control(head=start, tail=end), d))
    write("ring_reader", "empty_4k", ring_seed(0, control(), bytes(4096)))
    # Stale records from an earlier lap (commit words of position - capacity).
    d, _ = ring_data(4096, data_records([8, 8, 8]))
    write("ring_reader", "stale_lap", ring_seed(2, control(head=4096), d))
    # Corrupt rings.
    d, _ = ring_data(4096, [(0x12345678, b"zz", None)])
    write("ring_reader", "corrupt_kind", ring_seed(0, control(), d))
    d, _ = ring_data(4096, [(KIND_DATA, b"a", None)])
    struct.pack_into("<I", d, 8, 5000)
    write("ring_reader", "corrupt_length", ring_seed(0, control(), d))
    d, _ = ring_data(4096, [(KIND_PADDING, 100, None)])
    write("ring_reader", "padding_at_zero", ring_seed(0, control(), d))
    write("ring_reader", "unaligned_head", ring_seed(0, control(head=8), bytes(4096)))
    start = 4096 - 32
    d, _ = ring_data(4096, [(KIND_PADDING, None, None)], start=start)
    struct.pack_into("<QII", d, 0, 4096 + 1, 4096 - 16, KIND_PADDING)  # a second padding at offset 0
    write("ring_reader", "two_paddings", ring_seed(0, control(head=start), d))
    d, _ = ring_data(4096, [(KIND_DATA, b"q" * 40, None)], start=4096 - 32)
    write("ring_reader", "record_past_end", ring_seed(4, control(head=4096 - 32), d))
    d, end = ring_data(4096, data_records([100] * 30))
    write("ring_reader", "full_ring_sleeping", ring_seed(6, control(tail=end), d))


if __name__ == "__main__":
    segment_seeds()
    ring_seeds()
