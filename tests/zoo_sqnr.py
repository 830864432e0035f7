#!/usr/bin/python3
"""SQNR in dB of the integer engine's logits against FP32 ones, for tests/t_zoo.sh.

usage: zoo_sqnr.py FP32_DUMP INT_DUMP INFO_JSON
FP32_DUMP and INT_DUMP are `tern eval --dump` files (one line of scores per image). The integer
dump holds the raw int32 logits m (value = m * 2^-exp) unless it already holds scaled values; the
output tensor's exponent comes from `tern info X.tern --json` (the layer producing the logits).
SQNR = 10 log10(sum f^2 / sum (f - q)^2) over all images and classes.
"""
import json, math, sys

f = [[float(v) for v in l.split()] for l in open(sys.argv[1])]
q = [[float(v) for v in l.split()] for l in open(sys.argv[2])]
info = json.load(open(sys.argv[3]))
exp = info["layers"][-1]["exp"]
if all(abs(v - round(v)) == 0 for row in q for v in row):   # raw integers: scale them
    q = [[v * 2.0 ** -exp for v in row] for row in q]
assert len(f) == len(q) and all(len(a) == len(b) for a, b in zip(f, q)), "dumps differ in shape"
s = sum(v * v for row in f for v in row)
e = sum((a - b) ** 2 for ra, rb in zip(f, q) for a, b in zip(ra, rb))
print("%.2f" % (10 * math.log10(s / e) if e > 0 else 99.0))
