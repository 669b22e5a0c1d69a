"""@com_google_absl for the test of eshm_dependencies(abseil = "@com_google_absl"): a repository laid out as
Bazel's abseil is (absl/status:statusor, absl/strings:str_format, ...), so eshm can only reach it through
those labels. Its code is Debian's static archives (libabsl_*.a) and their headers: a binary built with it
links no libabsl_*.so, which is how the test tells that eshm used this abseil and not its own default.
"""

_PACKAGES = {
    "absl/status": ["status", "statusor"],
    "absl/strings": ["strings", "str_format"],
    "absl/time": ["time"],
    "absl/functional": ["function_ref"],
    "absl/flags": ["flag", "parse", "usage", "reflection", "config"],
}

_MODULES = ["absl_status", "absl_statusor", "absl_strings", "absl_str_format", "absl_time", "absl_flags",
            "absl_flags_parse", "absl_flags_usage", "absl_flags_reflection", "absl_flags_config"]

def _own_abseil_impl(rctx):
    result = rctx.execute(["pkg-config", "--libs", "--static"] + _MODULES)
    if result.return_code != 0:
        fail("pkg-config failed: " + result.stderr)
    archives = ["-l:lib{}.a".format(f[2:]) for f in result.stdout.strip().split(" ") if f.startswith("-labsl_")]
    rctx.symlink("/usr/include/absl", "include/absl")
    rctx.file("BUILD.bazel", "")
    rctx.file("include/BUILD.bazel", """
cc_library(
    name = "abseil",
    hdrs = glob(["absl/**/*.h", "absl/**/*.inc"]),
    includes = ["."],
    linkopts = {linkopts},
    visibility = ["//visibility:public"],
)
""".format(linkopts = repr(["-Wl,--start-group"] + archives + ["-Wl,--end-group", "-lrt", "-latomic"])))
    for package, targets in _PACKAGES.items():
        rctx.file(package + "/BUILD.bazel", "\n".join([
            'alias(name = "{}", actual = "//include:abseil", visibility = ["//visibility:public"])'.format(t)
            for t in targets
        ]) + "\n")

own_abseil = repository_rule(implementation = _own_abseil_impl, local = True)
