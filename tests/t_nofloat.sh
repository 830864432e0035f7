#!/usr/bin/env bash
# The integer inference path must contain no floating-point arithmetic: disassemble the engine and
# kernel objects and fail on any x87 instruction or SSE/AVX floating-point arithmetic, comparison
# or conversion (plain register moves and bitwise ops on xmm registers are data movement, allowed).
. "$(dirname "$0")/lib.sh"
objs="$BUILD/src/kernels/select.o"
for f in $BUILD/src/engine/*.o; do objs="$objs $f"; done
for f in $BUILD/src/kernels/ref/*.o $BUILD/src/kernels/x86/conv_*.o; do objs="$objs $f"; done
# arithmetic/compare/convert on scalar or packed single/double, FMA, x87
re='^v?(add|sub|mul|div|sqrt|max|min|cmp|u?comi|fn?madd|fn?msub|round|rcp|rsqrt|dp|hadd|hsub|addsub)[a-z0-9]*(ss|sd|ps|pd)$|^v?cvt|^f(ld|st|add|sub|mul|div|ild|ist|isttp|comi|ucomi|sqrt|xch|chs|abs|init)[a-z]*$'
for o in $objs; do
    if [ ! -f "$o" ]; then bad "missing object $o"; continue; fi
    found=$(objdump -d --no-show-raw-insn "$o" | awk -F'\t' 'NF >= 2 { split($2, a, " "); print a[1] }' | grep -E "$re" | sort | uniq -c)
    if [ -n "$found" ]; then bad "$o uses floating point:"; echo "$found" | sed 's/^/     /'
    else ok "$o: no floating-point instructions"; fi
done
# the check itself must be able to fail: the FP32 executor is full of float arithmetic
if objdump -d --no-show-raw-insn "$BUILD/src/graph/fp32_ops.o" | awk -F'\t' 'NF >= 2 { split($2, a, " "); print a[1] }' | grep -qE "$re"; then
    ok "the detector finds float instructions in fp32_ops.o"
else bad "the detector finds nothing in fp32_ops.o: it is broken"; fi
finish
