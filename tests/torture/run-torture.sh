#!/usr/bin/env bash
# Runs the torture test (tests/torture/torture, see torture.c) in
# several configurations, one after the other:
#   run-torture.sh light   about a minute in all (make check)
#   run-torture.sh long SECONDS   SECONDS in all (make check-torture:
#                          at least 1,000,000 operations and 200 kills
#                          with the default 900)
# Configurations: internal mode; external mode (remap-spare=FILE);
# each again with a power cut at every SIGKILL: nbdkit's cache filter
# in writeback mode under the faults loses what the plugin was not
# asked to flush, and in external mode tests/torture/powerloss.c
# undoes what was written to the spare file and not synced.
# Environment:
#   TORTURE          the program (default: next to this script)
#   TORTURE_CLASSES  fault classes (default all; see torture.c)
#   TORTURE_SEED     a seed to replay (default: a new one per run)
#   TORTURE_THREADS  client threads (default 4)
#   TORTURE_KILLS    SIGKILLs per configuration (default: 30 a minute
#                    in the light run, 16 in the long one)
#   TORTURE_OPS      end each configuration after this many operations
#                    (default: no limit; the seconds decide)
#   TORTURE_CONFIGS  which configurations (default: internal external
#                    internal-powerloss external-powerloss); the time
#                    is shared among them
#   TORTURE_ARGS     more arguments for every run (like
#                    "--nbdkit-arg -D --nbdkit-arg remap.selftest_bug=1
#                    --stop-early")
# Prints each run's report; on a violation, the first violations in
# full and the seed to replay.  Exits 1 if any run found one.
_torture_dir=$(cd "$(dirname "$0")" && pwd)
# tests/functions.sh finds the filters from tests/: give it the paths
# when this script (one directory deeper) runs outside make check.
: "${REMAP_FILTER:=$_torture_dir/../../filter/.libs/nbdkit-remap-filter.so}"
: "${BADSECTOR_FILTER:=$_torture_dir/../badsector/.libs/nbdkit-badsector-filter.so}"
: "${TORTURE:=$_torture_dir/torture}"
export REMAP_FILTER BADSECTOR_FILTER
source "$_torture_dir/../functions.sh"
set -e
requires timeout
[ -x "$TORTURE" ] || fail "$TORTURE not found (run make check first)"

mode=${1:-light}
case $mode in
  light) total=${2:-54}; kills_per_min=30; size=8 ;;
  long)  total=${2:-900}; kills_per_min=16; size=16 ;;
  *) fail "usage: run-torture.sh light|long [SECONDS]" ;;
esac
configs=${TORTURE_CONFIGS:-internal external internal-powerloss external-powerloss}
nconfigs=$(echo $configs | wc -w)
per=$(( total / nconfigs ))
[ $per -ge 3 ] || per=3
kills=${TORTURE_KILLS:-$(( per * kills_per_min / 60 ))}
[ $kills -ge 1 ] || [ -n "$TORTURE_KILLS" ] || kills=1

found=0
run ()
{
  local name=$1 dir=$tmp/$1 r=0
  shift
  mkdir -p "$dir"
  echo "== $name: $per s, $kills kills"
  # The program bounds each server itself; this bounds the whole run.
  timeout $(( per + 120 )) "$TORTURE" --dir "$dir" --seconds "$per" \
    --kills "$kills" --size "$size" --threads "${TORTURE_THREADS:-4}" \
    --classes "${TORTURE_CLASSES:-all}" \
    ${TORTURE_SEED:+--seed "$TORTURE_SEED"} \
    ${TORTURE_OPS:+--ops "$TORTURE_OPS"} $TORTURE_ARGS "$@" \
    >"$dir/out" 2>&1 || r=$?
  grep '^torture:' "$dir/out" || true
  case $r in
    0) ;;
    1) found=1
       grep -v '^torture:' "$dir/out" | head -n 150 >&2
       echo "$name: violations found; replay with --seed" \
            "$(sed -n 's/^torture: seed \([0-9]*\) .*/\1/p' "$dir/out" | head -1)" >&2 ;;
    *) cat "$dir/out" >&2
       for log in "$dir"/nbdkit-*.log; do
         [ -s "$log" ] && { echo "--- $log"; tail -n 20 "$log"; } >&2
       done
       fail "$name: the torture test could not run (status $r)" ;;
  esac
}

for c in $configs; do
  case $c in
    internal) run internal ;;
    external) run external --external ;;
    internal-powerloss) run internal-powerloss --powerloss ;;
    external-powerloss) run external-powerloss --external --powerloss ;;
    *) fail "unknown configuration $c" ;;
  esac
done
[ $found -eq 0 ] || fail "violations found (above)"
echo "$test_name: no violations"
