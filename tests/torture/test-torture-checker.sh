#!/usr/bin/env bash
# The torture test's checker can fail: fed a read whose piece was made
# stale (an older version that a later acknowledged write replaced) or
# garbage (a flipped byte), it must report a violation, with the
# piece, the versions allowed and the history.  The filter runs
# without faults, so nothing else is wrong.
_torture_dir=$(cd "$(dirname "$0")" && pwd)
# tests/functions.sh finds the filters from tests/: give it the paths
# when this script (one directory deeper) runs outside make check.
: "${REMAP_FILTER:=$_torture_dir/../../filter/.libs/nbdkit-remap-filter.so}"
: "${BADSECTOR_FILTER:=$_torture_dir/../badsector/.libs/nbdkit-badsector-filter.so}"
: "${TORTURE:=$_torture_dir/torture}"
export REMAP_FILTER BADSECTOR_FILTER
source "$_torture_dir/../functions.sh"
set -e
[ -x "$TORTURE" ] || fail "$TORTURE not found (run make check first)"

for what in stale garbage; do
  r=0
  timeout 120 "$TORTURE" --dir "$tmp" --seconds 20 --kills 0 \
    --classes none --plant $what >"$tmp/out-$what" 2>&1 || r=$?
  grep '^torture:' "$tmp/out-$what"
  [ $r -eq 1 ] || { cat "$tmp/out-$what" >&2;
                    fail "planted $what read: exit status $r, not 1"; }
  grep -q '^VIOLATION: ' "$tmp/out-$what" ||
    fail "planted $what read: no violation printed"
  grep -q 'expected one of:' "$tmp/out-$what" ||
    fail "planted $what read: the allowed versions were not printed"
  grep -q 'history' "$tmp/out-$what" ||
    fail "planted $what read: no history printed"
  grep -q '^torture:   violations 1$' "$tmp/out-$what" ||
    fail "planted $what read: not exactly one violation"
  rm -f "$tmp"/*.img "$tmp"/bad.txt
done
echo "$test_name: both planted reads were caught"
