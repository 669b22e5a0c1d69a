"""Compiler options for eshm's own code (third-party headers are system headers and stay quiet)."""

ESHM_COPTS = [
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wshadow",
    "-Wnon-virtual-dtor",
    "-Wformat=2",
    "-Wundef",
    "-Wimplicit-fallthrough",
]

ESHM_TEST_COPTS = ESHM_COPTS + [
    # GoogleTest's macros compare signed and unsigned literals freely.
    "-Wno-sign-compare",
]
