#!/usr/bin/env bash
# nbdkit-remap fuzzers: run-fuzz.sh [SECONDS]   (default 60 per harness)
#
# Builds every harness (tests/fuzz/fuzz-*.c) with clang's libFuzzer,
# AddressSanitizer and UndefinedBehaviorSanitizer, compiling the core
# sources (filter/*.c but the nbdkit glue remap.c, params.c, nextio.c,
# listeners.c and storelock.c) with tests/unit/stubs.c,
# tests/unit/memdisk.c and fuzz-common.c,
# then runs each for SECONDS from its seed corpus (corpus/NAME, never
# written to: new inputs go to the build directory).  First every seed
# input is replayed on its own (the regression cases among them must
# pass once their bug is fixed); then each harness fuzzes in fork mode,
# going on after a crash, and the executions, coverage and the
# distinct failure sites are printed.  Exits 1 if any seed input
# fails, or fuzzing found a crash, leak, timeout, undefined behaviour,
# allocation over the harness's memory ceiling (mem_limits) or failed
# oracle (inputs kept under the build directory's artifacts/:
# add a new one to corpus/NAME as a regression case); 77 if clang is
# missing.
#
# FUZZ_BUILD (default tests/fuzz/build), FUZZ_HARNESSES (names without
# "fuzz-", default all), FUZZ_JOBS (harnesses run at once, default 2),
# FUZZ_REGRESS=0 skips replaying each seed input on its own first;
# SECONDS=0 only replays.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
seconds=${1:-60}
build=${FUZZ_BUILD:-$here/build}
jobs=${FUZZ_JOBS:-2}
CC=${FUZZ_CC:-clang}

command -v "$CC" >/dev/null || { echo "run-fuzz: $CC not found"; exit 77; }
mkdir -p "$build/obj" "$build/artifacts" "$build/corpus"
[ -f "$top/config.h" ] || { echo "run-fuzz: run configure first"; exit 77; }

# Undefined behaviour is fatal: a crash, with its input kept.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all"
# probe.c names what a disk holds with libblkid.
BLKID_CFLAGS=$(pkg-config --cflags blkid)
BLKID_LIBS=$(pkg-config --libs blkid)
CFLAGS="-g -O1 -std=gnu11 -pthread -fno-omit-frame-pointer $SAN \
  -I$top -I$top/filter -I$top/tests/unit -I$here $BLKID_CFLAGS \
  -Wall -Wno-unused-parameter"

# Different flags: start the build afresh.
if [ "$(cat "$build/flags" 2>/dev/null)" != "$CC $CFLAGS" ]; then
  rm -f "$build"/obj/*.o
  echo "$CC $CFLAGS" >"$build/flags"
fi

# Rebuilds an object when its source or any header is newer.
newest_header=$(ls -t "$top"/filter/*.h "$top"/tests/unit/*.h "$here"/*.h \
                  "$top/config.h" | head -1)
compile ()
{
  local src=$1 obj=$2 extra=$3
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]
  then
    # shellcheck disable=SC2086
    $CC $CFLAGS $extra -c "$src" -o "$obj" || return 1
  fi
}

core=()
for src in "$top"/filter/*.c "$top/tests/unit/stubs.c" \
           "$top/tests/unit/memdisk.c" "$here/fuzz-common.c"; do
  # The glue that links only into the filter (it calls nbdkit itself).
  case $(basename "$src") in
    remap.c|params.c|nextio.c|listeners.c|storelock.c) continue ;;
  esac
  core+=("$src")
done

echo "run-fuzz: building in $build"
pids=()
objs=()
i=0
for src in "${core[@]}"; do
  obj=$build/obj/$(basename "$(dirname "$src")")-$(basename "$src" .c).o
  objs+=("$obj")
  compile "$src" "$obj" "-fsanitize=fuzzer-no-link" &
  pids+=($!)
  i=$((i + 1))
  if [ $((i % jobs)) -eq 0 ]; then
    for p in "${pids[@]}"; do wait "$p" || { echo "run-fuzz: build failed"; exit 1; }; done
    pids=()
  fi
done
for p in "${pids[@]}"; do wait "$p" || { echo "run-fuzz: build failed"; exit 1; }; done

all=()
for h in "$here"/fuzz-*.c; do
  n=$(basename "$h" .c)
  [ "$n" = fuzz-common ] && continue
  all+=("${n#fuzz-}")
done
read -r -a harnesses <<<"${FUZZ_HARNESSES:-${all[*]}}"

for n in "${harnesses[@]}"; do
  compile "$here/fuzz-$n.c" "$build/obj/fuzz-$n.o" "-fsanitize=fuzzer-no-link" ||
    { echo "run-fuzz: build of fuzz-$n failed"; exit 1; }
  # shellcheck disable=SC2086
  $CC $CFLAGS -fsanitize=fuzzer "$build/obj/fuzz-$n.o" "${objs[@]}" \
    -o "$build/fuzz-$n" -lm $BLKID_LIBS ||
    { echo "run-fuzz: link of fuzz-$n failed"; exit 1; }
done

# Per-harness input size limits.
max_len ()
{
  case $1 in
    load) echo 131072 ;;
    metadata) echo 70000 ;;
    control) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

# Per-harness memory ceilings.  A load may allocate no more than its
# store holds (max_len): one allocation over 16 MiB is a failure, as is
# an RSS over 512 MiB (the sanitizers' own share included).
mem_limits ()
{
  case $1 in
    load) echo "-rss_limit_mb=512 -malloc_limit_mb=16" ;;
    *) echo "-rss_limit_mb=2560" ;;
  esac
}

# Where a failure happened: the first frame of each sanitizer report or
# oracle failure in a log, as "FUNCTION FILE:LINE", one per line, unique.
sites ()
{
  awk '
    /ERROR: AddressSanitizer|ERROR: LeakSanitizer|ERROR: libFuzzer|FUZZ FAILURE|deadly signal/ {
      want = 1; kind = $0; sub(/^.*(ERROR: |FUZZ FAILURE: )/, "", kind)
      sub(/ on address.*/, "", kind); next }
    want && /^ *#[0-9]+ 0x/ && !/libFuzzer|fuzzer::|__sanitizer|abort|raise|fuzz_fail|__interceptor|LLVMFuzzerTestOneInput|libc\.so|asan_/ {
      fr = $0; sub(/^ *#[0-9]+ 0x[0-9a-f]+ in /, "", fr); sub(/ \(.*$/, "", fr)
      sub(/.*\/filter\//, "filter/", fr); sub(/.*\/tests\//, "tests/", fr)
      print kind " in " fr; want = 0 }
    /runtime error:/ { r = $0; sub(/^.*\/filter\//, "filter/", r)
      sub(/^.*\/tests\//, "tests/", r); print "undefined behaviour: " r }
  ' "$1" | sort | uniq -c | sort -rn
}

# regress NAME: replays every seed input on its own; prints failures.
regress ()
{
  local n=$1 f out=$build/regress-$n.log bad=0
  : >"$out"
  for f in "$here/corpus/$n"/*; do
    [ -f "$f" ] || continue
    if ! UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
         "$build/fuzz-$n" $(mem_limits "$n") -runs=1 "$f" >>"$out" 2>&1 ||
       grep -q "runtime error:" "$out"; then
      echo "    regression input corpus/$n/$(basename "$f") fails:" \
           "$(sites "$out" | head -1 | sed 's/^ *[0-9]* //')"
      bad=$((bad + 1))
      : >"$out"
    fi
  done
  return $bad
}

# run_one NAME: fuzzes one harness in fork mode, so that it goes on
# after a crash (known bugs must not end the search for new ones).
run_one ()
{
  local n=$1 out=$build/fuzz-$n.log rc
  local seeds=$here/corpus/$n work=$build/corpus/$n
  mkdir -p "$work" "$seeds"
  rm -f "$build/artifacts/$n-"*
  ASAN_OPTIONS=detect_leaks=1 \
  UBSAN_OPTIONS=print_stacktrace=1 \
  "$build/fuzz-$n" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 \
    -ignore_ooms=1 -max_total_time="$seconds" -max_len="$(max_len "$n")" \
    -timeout=20 $(mem_limits "$n") \
    -artifact_prefix="$build/artifacts/$n-" "$work" "$seeds" \
    >"$out" 2>&1
  rc=$?
  echo "$rc" >"$build/fuzz-$n.rc"
}

regress_fail=0
if [ "${FUZZ_REGRESS:-1}" != 0 ]; then
  echo "run-fuzz: replaying the seed corpora"
  for n in "${harnesses[@]}"; do
    regress "$n" || regress_fail=$((regress_fail + $?))
  done
  echo "run-fuzz: $regress_fail seed/regression input(s) fail"
fi
[ "$seconds" -gt 0 ] || { [ $regress_fail -eq 0 ]; exit; }

start=$(date +%s)
running=()
for n in "${harnesses[@]}"; do
  run_one "$n" &
  running+=($!)
  if [ ${#running[@]} -ge "$jobs" ]; then
    wait "${running[0]}"
    running=("${running[@]:1}")
  fi
done
for p in "${running[@]}"; do wait "$p"; done

failed=0
total=0
for n in "${harnesses[@]}"; do
  log=$build/fuzz-$n.log
  rc=$(cat "$build/fuzz-$n.rc")
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
  execs=$(echo "$last" | sed -n 's/^#\([0-9]*\):.*/\1/p')
  cov=$(echo "$last" | grep -o 'cov: [0-9]*')
  bad=$(echo "$last" | sed -n 's/.*oom\/timeout\/crash: \([0-9/]*\).*/\1/p')
  corp=$(ls "$build/corpus/$n" 2>/dev/null | wc -l)
  total=$((total + ${execs:-0}))
  arts=$(ls "$build/artifacts/$n-"* 2>/dev/null | wc -l)
  if [ "$rc" -eq 0 ] && [ "$arts" -eq 0 ] &&
     { [ -z "$bad" ] || [ "$bad" = 0/0/0 ]; }; then
    printf 'run-fuzz: %-12s %10s executions, %s, corpus %s, ok\n' \
      "$n" "${execs:-?}" "${cov:-cov: ?}" "$corp"
  else
    failed=$((failed + 1))
    printf 'run-fuzz: %-12s %10s executions, %s: FAILED (oom/timeout/crash %s, %s inputs kept)\n' \
      "$n" "${execs:-?}" "${cov:-cov: ?}" "${bad:-?}" "$arts"
    # Replay the kept inputs to see where each one fails.
    : >"$build/replay-$n.log"
    for a in $(ls "$build/artifacts/$n-"* 2>/dev/null | head -20); do
      UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$build/fuzz-$n" -runs=1 "$a" >>"$build/replay-$n.log" 2>&1
    done
    sites "$build/replay-$n.log" | head -5 | sed 's/^/    /'
    ls "$build/artifacts/$n-"* 2>/dev/null | head -3 | sed 's/^/    input: /'
    echo "    (add a new input to tests/fuzz/corpus/$n/ as a regression" \
         "case; full log: $log)"
  fi
done
echo "run-fuzz: ${#harnesses[@]} harnesses, $total executions in" \
     "$(( $(date +%s) - start )) s, $failed harness(es) failed," \
     "$regress_fail regression input(s) failed"
[ $failed -eq 0 ] && [ $regress_fail -eq 0 ]
