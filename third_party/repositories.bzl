"""Every external repository eshm uses, all local: nothing is ever downloaded.

C++ libraries come from Debian packages (installed by tools/setup.sh) and are described to Bazel through
pkg-config, so link flags always match what is installed. A missing package fails the build at once with
the command that fixes it, instead of Bazel trying the network and timing out.
"""

load("//third_party:python.bzl", "local_cython", "local_python")

_SETUP_HINT = "run `bash tools/setup.sh` from the eshm checkout (it installs the Debian packages eshm needs)"

def _pkg_config(rctx, modules, flag):
    result = rctx.execute(["pkg-config", flag] + modules)
    if result.return_code != 0:
        fail("pkg-config {} {} failed: {}\n{}".format(flag, " ".join(modules), result.stderr.strip(), _SETUP_HINT))
    return [f for f in result.stdout.strip().split(" ") if f]

def _debian_cc_library_impl(rctx):
    for header in rctx.attr.required_headers:
        if not rctx.path(header).exists:
            fail("{} is missing: {}".format(header, _SETUP_HINT))
    linkopts = _pkg_config(rctx, rctx.attr.pkg_config_modules, "--libs") if rctx.attr.pkg_config_modules else []
    linkopts += rctx.attr.extra_linkopts
    cflags = _pkg_config(rctx, rctx.attr.pkg_config_modules, "--cflags") if rctx.attr.pkg_config_modules else []
    defines = [f[2:] for f in cflags if f.startswith("-D")]
    includes = []
    for f in cflags:
        if f.startswith("-I"):
            # Expose system include directories inside the repository so Bazel's header checks accept them.
            name = "include_" + str(len(includes))
            rctx.symlink(f[2:], name)
            includes.append(name)
    rctx.file("BUILD.bazel", """
cc_library(
    name = "lib",
    hdrs = glob([{hdr_globs}], allow_empty = True),
    includes = {includes},
    defines = {defines},
    linkopts = {linkopts},
    visibility = ["//visibility:public"],
)
""".format(
        hdr_globs = ", ".join(['"{}/**/*.h"'.format(i) for i in includes]),
        includes = repr(includes),
        defines = repr(defines),
        linkopts = repr(linkopts),
    ))

debian_cc_library = repository_rule(
    implementation = _debian_cc_library_impl,
    attrs = {
        "pkg_config_modules": attr.string_list(),
        "required_headers": attr.string_list(),
        "extra_linkopts": attr.string_list(),
    },
    local = True,
)

def _rules_cc_forwarder_impl(rctx):
    # Debian's bazel-rules-cc is newer than Bazel 4.2.3 understands; eshm only needs the native rules.
    rctx.file("BUILD.bazel", "")
    rctx.file("cc/BUILD.bazel", "")
    rctx.file("cc/defs.bzl", """
cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
objc_library = native.objc_library
""")

_rules_cc_forwarder = repository_rule(implementation = _rules_cc_forwarder_impl)

def _remote_coverage_tools_stub_impl(rctx):
    # Bazel 4 references this repository from its test actions even when coverage is off.
    rctx.file("BUILD.bazel", """
filegroup(name = "coverage_report_generator", srcs = [], visibility = ["//visibility:public"])
filegroup(name = "lcov_merger", srcs = [], visibility = ["//visibility:public"])
""")

_remote_coverage_tools_stub = repository_rule(implementation = _remote_coverage_tools_stub_impl)

# The targets of a Bazel-built abseil that eshm uses (the library: status, strings, time, function_ref; its
# tools and benchmarks: flags).
_ABSEIL_TARGETS = [
    "//absl/status",
    "//absl/status:statusor",
    "//absl/strings",
    "//absl/strings:str_format",
    "//absl/time",
    "//absl/functional:function_ref",
    "//absl/flags:flag",
    "//absl/flags:parse",
    "//absl/flags:usage",
    "//absl/flags:reflection",
    "//absl/flags:config",
]

def _workspace_abseil_impl(rctx):
    rctx.file("BUILD.bazel", """
cc_library(
    name = "lib",
    deps = {deps},
    visibility = ["//visibility:public"],
)
""".format(deps = repr([rctx.attr.repository + t for t in _ABSEIL_TARGETS])))

# @eshm_abseil made of the depending workspace's own abseil repository.
_workspace_abseil = repository_rule(
    implementation = _workspace_abseil_impl,
    attrs = {"repository": attr.string()},
)

def eshm_dependencies(abseil = None):
    """Declares every repository eshm builds with. Call once from WORKSPACE.

    Repositories a depending workspace already declares (rules_cc, rules_java, ...) are left as they are.

    Args:
      abseil: the name of a repository holding abseil built by Bazel (its own BUILD files, as the upstream
        source tree has them), e.g. "@com_google_absl": eshm then builds against it, so that one binary
        never mixes two abseils. None (the default): Debian's libabsl-dev, found with pkg-config.
    """
    if not native.existing_rule("rules_cc"):
        _rules_cc_forwarder(name = "rules_cc")
    if not native.existing_rule("remote_coverage_tools"):
        _remote_coverage_tools_stub(name = "remote_coverage_tools")
    if not native.existing_rule("rules_java"):
        native.local_repository(name = "rules_java", path = "/usr/share/bazel/rules/java")
    if abseil:
        if not abseil.startswith("@") or "/" in abseil or ":" in abseil:
            fail("eshm_dependencies(abseil = {}): give a repository name such as \"@com_google_absl\"".format(repr(abseil)))
        _workspace_abseil(name = "eshm_abseil", repository = abseil)
    else:
        _debian_abseil()
    debian_cc_library(
        name = "system_googletest",
        pkg_config_modules = ["gmock", "gtest"],
        required_headers = ["/usr/include/gtest/gtest.h", "/usr/include/gmock/gmock.h"],
    )
    # ZeroMQ and its C++ header (cppzmq), for eshm-bridge's link between hosts (tools/bridge/).
    debian_cc_library(
        name = "system_zmq",
        pkg_config_modules = ["libzmq"],
        required_headers = ["/usr/include/zmq.h", "/usr/include/zmq.hpp"],
    )
    debian_cc_library(
        name = "system_python_headers",
        pkg_config_modules = ["python3"],
        required_headers = ["/usr/include/python3.11/Python.h"],
    )
    # The interpreter the Python binding is built and tested with, and its Cython (third_party/python.bzl).
    if not native.existing_rule("local_python"):
        local_python(name = "local_python")
    if not native.existing_rule("local_cython"):
        local_cython(name = "local_cython")

def _debian_abseil():
    debian_cc_library(
        name = "eshm_abseil",
        pkg_config_modules = [
            "absl_statusor",
            "absl_status",
            "absl_strings",
            "absl_str_format",
            "absl_time",
            "absl_flags",
            "absl_flags_parse",
            "absl_synchronization",
        ],
        required_headers = ["/usr/include/absl/status/statusor.h"],
    )

def eshm_register_toolchains():
    """Makes the python3 on PATH (@local_python) Bazel's Python toolchain. Called from eshm's WORKSPACE.

    Kept apart from eshm_dependencies() so that a workspace depending on eshm keeps its own Python toolchain.
    """
    native.register_toolchains("@local_python//:toolchain")
