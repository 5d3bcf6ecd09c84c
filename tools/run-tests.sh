#!/usr/bin/env bash
# THE test command (CI runs it through .ci/run): installs the Debian
# packages, configures and builds everything, then runs every CTest test
# (unit tests, the BPF/kernel tests and the node-level integration tests).
# Exits non-zero on any build or test failure.
#
# usage: sudo tools/run-tests.sh [extra ctest args, e.g. -R integration -V]
# env:   EBPF_CNI_BUILD_DIR  build tree (default <repo>/build)
#        EBPF_CNI_BUILD_JOBS compile jobs (default 2)
#        EBPF_CNI_BUILD_TYPE CMake build type (default Release: the tests
#                            need no debug info, and compiling without it
#                            takes ~25 % less time, which keeps a fresh CI
#                            run under its 25 minutes; RelWithDebInfo for gdb)
#        EBPF_CNI_TEST_JOBS  ctest jobs (default 1: many tests create
#                            kernel objects; the integration tests are
#                            RUN_SERIAL regardless)
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD_DIR=${EBPF_CNI_BUILD_DIR:-$REPO/build}
BUILD_JOBS=${EBPF_CNI_BUILD_JOBS:-2}
BUILD_TYPE=${EBPF_CNI_BUILD_TYPE:-Release}
TEST_JOBS=${EBPF_CNI_TEST_JOBS:-1}

section() { printf '\n==== %s (%s)\n' "$*" "$(date +%T)"; }

section "dependencies"
"$REPO/tools/setup-deps.sh"

section "configure"
cmake -S "$REPO" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE"

section "build"
cmake --build "$BUILD_DIR" -j "$BUILD_JOBS"

section "test"
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error -j "$TEST_JOBS" "$@"
