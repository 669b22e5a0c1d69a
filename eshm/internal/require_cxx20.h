// Included first by every public eshm header. eshm is C++20 (std::span and other C++20 library types): a
// C++17 or older compilation gets one clear error here, and the including header skips its body
// (`#if ESHM_CXX20`), so no cascade of errors follows.
#ifndef ESHM_INTERNAL_REQUIRE_CXX20_H_
#define ESHM_INTERNAL_REQUIRE_CXX20_H_

#if defined(__cplusplus) && __cplusplus >= 202002L
#define ESHM_CXX20 1
#else
#define ESHM_CXX20 0
#error "eshm needs C++20: compile with -std=c++20 (Bazel: build --cxxopt=-std=c++20 --host_cxxopt=-std=c++20 in .bazelrc)"
#endif

#endif  // ESHM_INTERNAL_REQUIRE_CXX20_H_
