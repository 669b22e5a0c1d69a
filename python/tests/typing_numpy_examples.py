"""Typed uses of eshm with numpy, checked by mypy --strict in test_typing.py (never run as a test).

numpy arrays are bytes-like for every call that takes a buffer, on every Python version (typeshed's Buffer
covers them only on 3.12+), and the array calls are typed with numpy's own types.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from eshm import ESHM, ArrayView


def examples(name: str) -> None:
    with ESHM(name, role="master", m2s_capacity=1 << 22, s2m_capacity=1 << 22) as ch:
        a = np.arange(12, dtype=np.float32).reshape(3, 4)
        ch.write(a)
        ch.write(a.T)
        sent: bool = ch.try_write(a[:, 1])
        count: int = ch.write_many([a, a.T, b"bytes"])
        out = np.empty(12, dtype=np.float32)
        n: int = ch.read_into(out)
        ch.write_array(a)
        ch.write_array([1, 2, 3], timeout_ms=100)
        got: npt.NDArray[Any] = ch.read_array(timeout_ms=1000)
        view: ArrayView = ch.recv_array()
        with view as b:
            total: float = float(b.sum())
        with ch.claim(a.nbytes) as mv:
            np.frombuffer(mv, dtype=np.float32)[:] = a.ravel()
        print(sent, count, n, got.shape, total)
