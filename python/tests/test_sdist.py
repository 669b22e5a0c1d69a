"""The source distribution stands on its own: it carries the engine's sources, and installs offline.

Builds the sdist from the repository's python/ (a copy), installs it with pip into a fresh virtual environment
without the repository in reach (no network, no build isolation: setuptools and Cython come from the
interpreter's site-packages), and runs a round trip with the installed package. Skipped outside an eshm
checkout (ESHM_SOURCE_ROOT or this file's ../..), e.g. in Bazel's runfiles.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def _checkout():
    for root in (os.environ.get("ESHM_SOURCE_ROOT"), os.path.join(HERE, "..", "..")):
        if root and os.path.isfile(os.path.join(root, "eshm", "channel.cc")) and \
                os.path.isfile(os.path.join(root, "python", "setup.py")):
            return os.path.abspath(root)
    return None


def _run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kwargs)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_sdist_carries_the_engine_and_installs_offline(tmp_path):
    root = _checkout()
    if root is None:
        pytest.skip("not in an eshm checkout: no engine sources to package")
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "python"), src, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "*.so", "_eshm.cpp", "__pycache__", ".pytest_cache", "BUILD.bazel"))
    env = dict(os.environ, ESHM_SOURCE_ROOT=root)
    _run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path / "dist")], cwd=src, env=env)
    (archive,) = (tmp_path / "dist").iterdir()

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = {m.name.split("/", 1)[1] for m in members if "/" in m.name}
    for needed in ("setup.py", "pyproject.toml", "eshm/_eshm.pyx", "eshm/_status.pxi", "eshm/_channel.pxi",
                   "eshm/_views.pxi", "eshm/_eshm_cpp.pxd", "eshm/_eshm_glue.h", "eshm/__init__.py",
                   "eshm/py.typed", "engine/eshm/channel.cc", "engine/eshm/channel.h",
                   "engine/eshm/internal/status_macros.h", "engine/eshm/internal/result_code.h",
                   "engine/eshm/internal/require_cxx20.h"):
        assert needed in names, sorted(names)
    for m in members:
        assert m.isfile() or m.isdir(), f"{m.name} is not a regular file (a link?)"
        assert not os.path.isabs(m.name) and ".." not in m.name.split("/"), m.name

    # Install where neither the repository nor ESHM_SOURCE_ROOT can help.
    venv = tmp_path / "venv"
    # --without-pip: before 3.12 a venv gets ensurepip's old setuptools, which would shadow the interpreter's
    # (too old for pyproject.toml metadata); the interpreter's own pip installs into the venv all the same.
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)])
    py = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("ESHM_SOURCE_ROOT", "PYTHONPATH")}
    _run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-build-isolation",
          "--no-index", "--no-deps", str(archive)], cwd=tmp_path, env=env)

    name = f"sdist_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    smoke = textwrap.dedent(f"""
        import sys
        import eshm
        assert eshm.__file__.startswith(sys.prefix), eshm.__file__
        with eshm.ESHM({name!r}, role=eshm.ESHMRole.MASTER) as m, eshm.ESHM({name!r}, role=eshm.ESHMRole.SLAVE) as s:
            m.write(b"ping")
            assert s.read(timeout_ms=5000) == b"ping"
            s.write(b"pong")
            assert m.read(timeout_ms=5000) == b"pong"
        print("round trip ok")
    """)
    try:
        assert "round trip ok" in _run([py, "-c", smoke], cwd=tmp_path, env=env)
    finally:
        try:
            os.unlink(f"/dev/shm/eshm_{name}")
        except FileNotFoundError:
            pass
