#!/usr/bin/env bash
# Runs every unit-test binary and every tests/t_*.sh script; prints one total line.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build/release}
export TERN_DATA=${TERN_DATA:-$(cd ../shared/data 2>/dev/null && pwd)}
pass=0; fail=0; skip=0; failed=()
for t in "$BUILD"/tests/test_* tests/t_*.sh; do
    [ -x "$t" ] || [ "${t%.sh}" != "$t" ] || continue
    [ -e "$t" ] || continue
    name=$(basename "$t")
    # quick mode (sanitizer builds): unit tests, the bad-input script and the short fine-tuning runs
    if [ -n "${TERN_QUICK:-}" ] && [ "${t%.sh}" != "$t" ] && [ "$name" != t_bad_input.sh ] && [ "$name" != t_finetune.sh ]; then continue; fi
    echo "== $name"
    t0=$(date +%s)
    if [ "${t%.sh}" != "$t" ]; then out=$(BUILD=$BUILD bash "$t" 2>&1); rc=$?; else out=$("$t" 2>&1); rc=$?; fi
    echo "$out" | grep -v '^ok ' | sed 's/^/   /'
    echo "   ($(( $(date +%s) - t0 )) s)"
    line=$(echo "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -1)
    if [ -n "$line" ]; then
        p=$(echo "$line" | awk '{print $1}'); f=$(echo "$line" | awk '{print $3}')
        s=$(echo "$line" | sed -n 's/.*, \([0-9]*\) skipped.*/\1/p'); s=${s:-0}
    else p=0; f=1; s=0; fi
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
    [ "$f" -ne 0 ] && failed+=("$name")
done
[ ${#failed[@]} -gt 0 ] && echo "failing: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
