#!/usr/bin/env bash
# The integer inference path must contain no floating-point arithmetic: disassemble the engine and
# kernel objects and fail on any x87 instruction or SSE/AVX floating-point arithmetic, comparison
# or conversion (plain register moves and bitwise ops on xmm registers are data movement, allowed).
set -u
BUILD=${BUILD:-build/release}
objs="$BUILD/src/exec/qexec.o $BUILD/src/kernels/select.o"
for f in $BUILD/src/kernels/ref/*.o $BUILD/src/kernels/x86/conv_*.o; do objs="$objs $f"; done
pass=0; fail=0
# arithmetic/compare/convert on scalar or packed single/double, FMA, x87
re='^v?(add|sub|mul|div|sqrt|max|min|cmp|u?comi|fn?madd|fn?msub|round|rcp|rsqrt|dp|hadd|hsub|addsub)[a-z0-9]*(ss|sd|ps|pd)$|^v?cvt|^f(ld|st|add|sub|mul|div|ild|ist|isttp|comi|ucomi|sqrt|xch|chs|abs|init)[a-z]*$'
for o in $objs; do
    if [ ! -f "$o" ]; then echo "FAIL missing object $o"; fail=$((fail+1)); continue; fi
    bad=$(objdump -d --no-show-raw-insn "$o" | awk -F'\t' 'NF >= 2 { split($2, a, " "); print a[1] }' | grep -E "$re" | sort | uniq -c)
    if [ -n "$bad" ]; then echo "FAIL $o uses floating point:"; echo "$bad" | sed 's/^/     /'; fail=$((fail+1))
    else echo "ok   $o: no floating-point instructions"; pass=$((pass+1)); fi
done
# the check itself must be able to fail: the FP32 executor is full of float arithmetic
if objdump -d --no-show-raw-insn "$BUILD/src/exec/fp32_ops.o" | awk -F'\t' 'NF >= 2 { split($2, a, " "); print a[1] }' | grep -qE "$re"; then
    echo "ok   the detector finds float instructions in fp32_ops.o"; pass=$((pass+1))
else echo "FAIL the detector finds nothing in fp32_ops.o: it is broken"; fail=$((fail+1)); fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
