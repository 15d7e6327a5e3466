#!/usr/bin/env bash
# Builds dagger with AddressSanitizer and UndefinedBehaviorSanitizer (assert()s kept) in
# build-sanitize/ and runs the fast tests there, the fuzz targets' bounded runs included.
# Any sanitizer report fails the test it occurs in. Arguments go to ctest (e.g. -R fuzz).
#   FUZZ_INPUTS=100000 scripts/sanitize.sh   also runs every fuzz target for that many inputs
# JIT-compiled kernels and LLVM's own libraries are not instrumented.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SANITIZE_BUILD_DIR:-$root/build-sanitize}
"$root/scripts/build.sh" "$build" -DDAGGER_WERROR=ON -DDAGGER_SANITIZE=address,undefined

# ASan: a huge allocation (a size trusted from a header) is a report, not a null or bad_alloc;
# 4 GiB is above anything the fast tests allocate (the whole Fashion-MNIST is 220 MB of floats).
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=0:max_allocation_size_mb=4096:detect_leaks=1:strict_init_order=1:check_initialization_order=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$root/scripts/lsan.supp:print_suppressions=0}

# The sanitized tests run several times slower; the timeout is the plain build's doubled.
ctest --test-dir "$build" --output-on-failure --parallel "$(nproc)" --timeout 1200 -L fast "$@"

if [[ -n ${FUZZ_INPUTS:-} ]]; then
  for target in idx npy csv manifest checkpoint-npy model-text ir; do
    ASAN_OPTIONS="$ASAN_OPTIONS:max_allocation_size_mb=256" "$build/tests/dagger-fuzz" "$target" \
      --inputs "$FUZZ_INPUTS" --save "$build/fuzz-failure-$target"
  done
fi
