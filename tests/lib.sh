# Shared by the tests/t_*.sh scripts: where things are, a scratch folder, pass/fail counting.
# Source it, call ok/bad per check, and end with `finish`.
set -u
BUILD=${BUILD:-build/release}
TERN=$BUILD/tern
D=${TERN_DATA:-../shared/data}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
pass=0; fail=0
ok() { pass=$((pass+1)); echo "ok   $*"; }
bad() { fail=$((fail+1)); echo "FAIL $*"; }
# field FILE NAME: the last numeric value of "NAME": in a JSON file
field() { sed -n "s/.*\"$2\": \([-0-9.e]*\).*/\1/p" "$1" | tail -1; }
finish() { echo "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; exit $?; }
