#!/usr/bin/env bash
# Self-test of the torture test against real bugs: the filter's debug
# knob -D remap.selftest_bug=N puts a known defect back (1: a failed
# relocation forgets the sector; 4: no per-unit exclusion in
# read-modify-write; 5: a boolean flush), and a light run must find a
# violation for each.  Needs a filter that has the knob, and one whose
# light run is clean without it (nbdkit ignores an unknown -D flag: on
# a filter without the knob, nothing is caught and this fails).
# Every fault class is on, whatever TORTURE_CLASSES says.
# make check-torture-knobs runs it.
_torture_dir=$(cd "$(dirname "$0")" && pwd)
# tests/functions.sh finds the filters from tests/: give it the paths
# when this script (one directory deeper) runs outside make check.
: "${REMAP_FILTER:=$_torture_dir/../../filter/.libs/nbdkit-remap-filter.so}"
: "${BADSECTOR_FILTER:=$_torture_dir/../badsector/.libs/nbdkit-badsector-filter.so}"
: "${TORTURE:=$_torture_dir/torture}"
export REMAP_FILTER BADSECTOR_FILTER
source "$_torture_dir/../functions.sh"
set -e
missed=""
# The light run's time, spent on the configurations where each defect
# can show: a relocation needs the internal spare area to fail, a
# boolean flush needs power cuts of the spare file.  The race of knob 4
# needs spares to remap to: in internal mode the first relocation that
# meets a whole spare area failing writes retires every spare, and no
# remap happens after that, so external mode goes first.  Each
# configuration gets its share of the light run's time, as in the light
# run, and the next one runs only if that one caught nothing.
for n in 1 4 5; do
  began=$(date +%s)
  case $n in
    1) configs="internal internal-powerloss" ;;
    4) configs="external internal" ;;
    5) configs="external-powerloss" ;;
  esac
  per=$(( ${TORTURE_LIGHT_SECONDS:-54} / $(echo $configs | wc -w) ))
  caught=""
  : >"$tmp/out-$n"
  for c in $configs; do
    TORTURE_CONFIGS=$c TORTURE_CLASSES=all \
    TORTURE_ARGS="--stop-early --nbdkit-arg -D --nbdkit-arg remap.selftest_bug=$n" \
      "$_torture_dir/run-torture.sh" light "$per" >>"$tmp/out-$n" 2>&1 || :
    if grep -q '^VIOLATION: ' "$tmp/out-$n"; then
      caught=$c
      break
    fi
  done
  if [ -n "$caught" ]; then
    echo "knob $n: caught in $caught ($(( $(date +%s) - began )) s)"
    grep -m1 -A2 '^VIOLATION: ' "$tmp/out-$n"
  else
    echo "knob $n: NOT caught"
    grep '^torture:' "$tmp/out-$n" || cat "$tmp/out-$n"
    missed="$missed $n"
  fi
done
[ -z "$missed" ] || fail "the light run did not catch knob(s)$missed"
echo "$test_name: every knob was caught"
