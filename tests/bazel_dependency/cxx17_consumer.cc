// Includes eshm as a C++17 translation unit would: see BUILD.bazel.
#include "eshm/channel.h"
#include "eshm/ring.h"

int cxx17_consumer() { return 17; }
