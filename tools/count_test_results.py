#!/usr/bin/env python3
"""Counts test cases from Bazel's JUnit XML for the given test targets.

Usage: count_test_results.py TESTLOGS_DIR FAILED_TARGETS_FILE TARGET...
       count_test_results.py --junit JUNIT_XML
Prints "<passed> <failed>". A target Bazel reported as failed whose XML shows no failing case (a crash,
a timeout, a sanitizer abort after the last case) counts one failure, so nothing that went wrong is lost.
"""
import os
import sys
import xml.etree.ElementTree as ET


def count_target(testlogs, target):
    package, _, name = target.lstrip("/").partition(":")
    path = os.path.join(testlogs, package, name, "test.xml")
    if not os.path.exists(path):
        return 0, 0, False
    passed = failed = 0
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return 0, 1, True
    for case in root.iter("testcase"):
        if case.get("status") == "notrun" or case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        else:
            passed += 1
    return passed, failed, True


def count_junit(path):
    """Counts the cases of one JUnit XML file (pytest's): prints "<passed> <failed>"."""
    if not os.path.exists(path):
        print(0, 0)
        return
    passed = failed = 0
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        print(0, 1)
        return
    for case in root.iter("testcase"):
        if case.find("skipped") is not None:
            continue
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        else:
            passed += 1
    print(passed, failed)


def main():
    if sys.argv[1] == "--junit":
        count_junit(sys.argv[2])
        return
    testlogs, failed_file = sys.argv[1], sys.argv[2]
    targets = sys.argv[3:]
    with open(failed_file) as f:
        failed_targets = {line.strip() for line in f if line.strip()}
    total_passed = total_failed = 0
    for target in targets:
        passed, failed, found = count_target(testlogs, target)
        if target in failed_targets and failed == 0:
            failed = 1
        if not found and target not in failed_targets:
            # Built but never run (should not happen with `bazel test`): count it as a failure to be loud.
            failed = 1
        total_passed += passed
        total_failed += failed
    print(total_passed, total_failed)


if __name__ == "__main__":
    main()
