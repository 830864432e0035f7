#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds, runs every test in release, then the
# unit, bad-input and short fine-tuning tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -eu
cd "$(dirname "$0")/.."
bash scripts/deps.sh build test
export TERN_DATA=${TERN_DATA:-$(cd ../shared/data && pwd)}
make -j2 >/dev/null
make -j2 test
make -j2 MODE=debug build/debug/tern $(for t in tests/test_*.c; do echo build/debug/tests/$(basename ${t%.c}); done) >/dev/null
TERN_QUICK=1 BUILD=build/debug tests/run.sh
