"""The Python interpreter the Python binding is built and tested with: the `python3` on the client's PATH.

Bazel's actions run with a fixed PATH (--incompatible_strict_action_env: /bin:/usr/bin:/usr/local/bin), where
`python3` is Debian's interpreter without Cython or pytest. The binding is built and tested with the
interpreter the developer uses instead (the one tools/setup.sh installs requirements.txt into), found once
at fetch time and named by its absolute path, so every action sees the same one. Re-fetched when PATH
changes.

Two repositories, so that a problem with the Python build tools fails only the Python targets:
  @local_python  :runtime / :toolchain, a py_runtime for that interpreter, registered as Bazel's Python 3
                 toolchain (loaded by every build that resolves toolchains: it never fails for Cython)
  @local_cython  :cython, a script running that interpreter's Cython (a genrule tool), after checking that
                 it imports Cython and that its major.minor matches the Python headers; version.bzl with
                 PYTHON_VERSION ("3.11") and PYTHON_EXECUTABLE
"""

_SETUP_HINT = "run `bash tools/setup.sh` from the eshm checkout (it installs Cython, pytest and the rest of requirements.txt)"

# Prints what the rule needs, one item a line. Cython is imported last, so a missing Cython still reports
# which interpreter was found.
_PROBE = """
import sys
print(sys.executable)
print("%d.%d" % sys.version_info[:2])
try:
    import Cython
    print(Cython.__version__)
except ImportError as e:
    print("MISSING " + str(e))
"""

def _probe(rctx):
    """(executable, "major.minor", Cython version or "MISSING <why>", the python3 found on PATH)."""
    python = rctx.which("python3")
    if python == None:
        fail("no python3 on PATH ({}): {}".format(rctx.os.environ.get("PATH", ""), _SETUP_HINT))
    probe = rctx.execute([python, "-c", _PROBE])
    if probe.return_code != 0:
        fail("{} -c <probe> failed: {}\n{}".format(python, probe.stderr.strip(), _SETUP_HINT))
    lines = probe.stdout.strip().split("\n")
    if len(lines) != 3:
        fail("unexpected output from {}: {}".format(python, probe.stdout))

    # A version manager's shim (pyenv) is a shell script that needs its environment: use the real binary.
    executable, version, cython = lines
    return executable, version, cython, python

def _local_cython_impl(rctx):
    executable, version, cython, python = _probe(rctx)
    if cython.startswith("MISSING"):
        fail("{} (Python {}, found as {} on PATH) cannot import Cython ({}): {}".format(
            executable,
            version,
            python,
            cython[len("MISSING "):],
            _SETUP_HINT,
        ))

    # The extension is compiled against //third_party:python_headers (pkg-config python3); an extension
    # built for another minor version would not import (or would crash).
    headers = rctx.execute(["pkg-config", "--modversion", "python3"])
    if headers.return_code != 0:
        fail("pkg-config --modversion python3 failed: {}\nrun `bash tools/setup.sh` (it installs python3-dev)".format(
            headers.stderr.strip(),
        ))
    header_version = headers.stdout.strip()
    if header_version != version:
        fail(("the python3 on PATH ({}) is Python {} but the Python headers (pkg-config python3) are for {}: " +
              "put a Python {} with Cython first on PATH, or install that version's headers").format(
            executable,
            version,
            header_version,
            header_version,
        ))

    rctx.file("cython.sh", "#!/bin/sh\n# Cython {} of {}\nexec '{}' -m cython \"$@\"\n".format(
        cython,
        executable,
        executable,
    ), executable = True)
    rctx.file("version.bzl", "PYTHON_VERSION = {}\nPYTHON_EXECUTABLE = {}\n".format(
        repr(version),
        repr(executable),
    ))
    rctx.file("BUILD.bazel", """
# Cython {cython} of Python {version} at {executable}.
sh_binary(
    name = "cython",
    srcs = ["cython.sh"],
    visibility = ["//visibility:public"],
)
""".format(version = version, executable = executable, cython = cython))

local_cython = repository_rule(
    implementation = _local_cython_impl,
    environ = ["PATH"],
    local = True,
)

def _local_python_impl(rctx):
    executable, version, cython, _ = _probe(rctx)
    rctx.file("BUILD.bazel", """
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

package(default_visibility = ["//visibility:public"])

# Python {version} at {executable}, with Cython {cython}.
py_runtime(
    name = "runtime",
    interpreter_path = {executable_repr},
    python_version = "PY3",
    stub_shebang = "#!" + {executable_repr},
)

py_runtime_pair(
    name = "runtime_pair",
    py3_runtime = ":runtime",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtime_pair",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
""".format(
        version = version,
        executable = executable,
        executable_repr = repr(executable),
        cython = cython,
    ))

local_python = repository_rule(
    implementation = _local_python_impl,
    environ = ["PATH"],
    local = True,
)
