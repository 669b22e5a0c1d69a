"""The package's type information (eshm/_eshm.pyi, eshm/__init__.py, py.typed): mypy --strict accepts
typing_examples.py (and, with numpy installed, typing_numpy_examples.py) for the running Python version and
rejects misuse. Skipped when mypy is not installed (requirements.txt installs it)."""

import os
import sys

import pytest

import eshm

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_package_ships_its_type_information():
    package = os.path.dirname(eshm.__file__)
    assert os.path.isfile(os.path.join(package, "py.typed"))
    assert os.path.isfile(os.path.join(package, "_eshm.pyi"))


def _has_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def _mypy(tmp_path, *files):
    api = pytest.importorskip("mypy.api", reason="mypy is not installed: pip install mypy (requirements.txt)")
    stdout, stderr, status = api.run(
        ["--strict", "--no-incremental", "--cache-dir", os.devnull, "--python-executable", sys.executable,
         "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}", *files])
    return stdout + stderr, status


def test_typed_examples_pass_mypy_strict(tmp_path):
    out, status = _mypy(tmp_path, os.path.join(HERE, "typing_examples.py"))
    assert status == 0, out


def test_numpy_arrays_pass_mypy_strict(tmp_path):
    """numpy arrays are accepted wherever bytes are, on every supported Python (typeshed's Buffer alone would
    reject them before 3.12), and the array calls carry numpy's types."""
    pytest.importorskip("numpy")
    out, status = _mypy(tmp_path, os.path.join(HERE, "typing_numpy_examples.py"))
    assert status == 0, out


def test_mypy_rejects_misuse(tmp_path):
    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        "from eshm import ESHM\n"
        "ch = ESHM('n')\n"
        "ch.write(123)\n"                        # not bytes-like
        "x: str = ch.read()\n"                   # read returns bytes
        "ch.read_many(max_messages='3')\n"       # not an int
        "ch.read_into(b'immutable')\n"           # fine for mypy (bytes is a Buffer); not checked
        "y: bytes = ch.try_read()\n"             # may be None
        "ch.claim(4).commit('4')\n"              # not an int
        "ESHM('n', wait='busy')\n"               # not a wait strategy
        "ESHM('n', role='boss')\n"               # not a role
        "ESHM('n', disconnect_behavior='soon')\n"  # not a disconnect behaviour
        "ch.read(buffer_size='4096')\n"         # not an int
        "z: str = ch.read_array()\n"            # an ndarray
    )
    out, status = _mypy(tmp_path, str(bad))
    assert status == 1, out
    for line in (3, 4, 5, 7, 8, 9, 10, 11, 12) + ((13,) if _has_numpy() else ()):
        assert f"bad_usage.py:{line}: error" in out, out
