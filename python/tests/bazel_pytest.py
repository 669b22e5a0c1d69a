"""Runs pytest files as a Bazel test (python/BUILD.bazel): `bazel_pytest.py FILE...`.

Bazel reads the JUnit XML from $XML_OUTPUT_FILE, so its counts are pytest's test cases, not one per target.
"""

import os
import sys

import pytest


def main():
    args = ["-q", "-p", "no:cacheprovider"]  # the cache would go into the read-only runfiles tree
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args.append("--junitxml=" + xml)
    return pytest.main(args + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
