"""Builds the eshm Python extension: Cython's _eshm.pyx plus the eshm C++ engine, compiled into one module.

The engine's sources are the repository's eshm/ directory (this file's parent's eshm/); set ESHM_SOURCE_ROOT
to build against another checkout. A source distribution carries its own copy of them in engine/eshm/
(`python3 setup.py sdist` puts it there), so it builds anywhere. The engine links against the system's
abseil (Debian libabsl-dev), found through pkg-config.

    python3 -m pip install ./python                        # from the repository root (needs PyPI for the
                                                           # isolated build environment)
    python3 -m pip install --no-build-isolation ./python   # offline: setuptools, wheel and Cython installed
    python3 setup.py sdist                                 # (in python/) dist/eshm-<version>.tar.gz
"""

import os
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
# Where the engine's copy lives inside a source distribution (engine/eshm/*.cc, *.h).
VENDORED = os.path.join(HERE, "engine")


def _source_root():
    if "ESHM_SOURCE_ROOT" in os.environ:
        return os.path.abspath(os.environ["ESHM_SOURCE_ROOT"])
    if os.path.isdir(os.path.join(VENDORED, "eshm")):
        return VENDORED  # an unpacked sdist
    return os.path.abspath(os.path.join(HERE, ".."))  # the repository


ROOT = _source_root()

# The engine's translation units: every eshm/*.cc and eshm/internal/*.cc but the tests and the C ABI (what
# //eshm:channel and its dependencies compile, eshm/BUILD.bazel), so a new engine file needs no change here.
ENGINE_EXCLUDED = {"c_api.cc"}
REQUIRED_SOURCES = ["channel.cc", "segment.cc", "ring.cc", "role_lock.cc", "futex.cc", "wait_strategy.cc"]
ABSL_PACKAGES = ["absl_statusor", "absl_status", "absl_strings", "absl_str_format", "absl_time",
                 "absl_synchronization"]


def engine_sources():
    engine = os.path.join(ROOT, "eshm")
    missing = [f for f in REQUIRED_SOURCES if not os.path.isfile(os.path.join(engine, f))]
    if missing:
        sys.exit(f"setup.py: the eshm C++ sources are not in {engine} (missing {', '.join(missing)}); build "
                 "from the repository (pip install ./python) or set ESHM_SOURCE_ROOT to a checkout")
    sources = []
    for directory in (engine, os.path.join(engine, "internal")):
        if os.path.isdir(directory):
            sources += [os.path.join(directory, f) for f in sorted(os.listdir(directory))
                        if f.endswith(".cc") and not f.endswith("_test.cc") and f not in ENGINE_EXCLUDED]
    return sources


def engine_files():
    """What an sdist must carry to compile the engine: its translation units and every header."""
    files = engine_sources()
    for directory in (os.path.join(ROOT, "eshm"), os.path.join(ROOT, "eshm", "internal")):
        if os.path.isdir(directory):
            files += [os.path.join(directory, f) for f in sorted(os.listdir(directory)) if f.endswith(".h")]
    return files


def pkg_config(*args):
    try:
        out = subprocess.run(["pkg-config", *args, *ABSL_PACKAGES], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"setup.py: pkg-config could not find abseil ({e}); install pkg-config and libabsl-dev")
    return shlex.split(out)


def extension():
    cflags = pkg_config("--cflags")
    libs = pkg_config("--libs")
    return Extension(
        "eshm._eshm",
        sources=[os.path.join("eshm", "_eshm.pyx")] + engine_sources(),
        include_dirs=[ROOT, os.path.join(HERE, "eshm")],
        language="c++",
        extra_compile_args=["-std=c++20", "-O2", "-g0", "-fvisibility=hidden", "-Wno-unused-function"] + cflags,
        # -z now: a missing engine symbol fails the import, not the first call that needs it.
        extra_link_args=libs + ["-lpthread", "-lrt", "-Wl,-z,now"],
    )


class SdistWithEngine(sdist):
    """Copies the engine's sources into the archive as engine/eshm/..., as regular files.

    The extension's sources outside python/ (../eshm/*.cc in the repository) are left out of the file list:
    an archive must not reach outside its own directory.
    """

    def make_release_tree(self, base_dir, files):
        inside = [f for f in files if not os.path.isabs(f) and not os.path.normpath(f).startswith("..")]
        super().make_release_tree(base_dir, inside)
        for source in engine_files():
            target = os.path.join(base_dir, "engine", os.path.relpath(source, ROOT))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.lexists(target):
                os.remove(target)  # may be a hard link to the source (an sdist made from an sdist)
            shutil.copyfile(source, target)


class ParallelBuildExt(build_ext):
    """Compiles the engine's translation units in parallel unless --parallel/-j says otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


def cythonized():
    from Cython.Build import cythonize

    return cythonize(
        [extension()],
        compiler_directives={"language_level": "3"},
        include_path=[HERE],
        quiet=True,
    )


if __name__ == "__main__":
    os.chdir(HERE)  # the paths above are relative to python/
    setup(ext_modules=cythonized(), cmdclass={"build_ext": ParallelBuildExt, "sdist": SdistWithEngine})
