#!/usr/bin/env bash
# nbdkit-remap benchmark (issue 5): the remap filter against bare
# nbdkit, measured in the same run, reported as ratios.
#
# Usage (from anywhere, after `make`):   bench/run-bench.sh
#
# Every configuration is its own nbdkit server, on a Unix socket, over
# its own copy of one image on /dev/shm:
#   A  nbdkit file IMG                                      (baseline)
#   B  nbdkit --filter=remap file IMG, no remaps
#   C  remap with C_REMAPS (100000) sectors remapped, spread at random
#      over a DISK_GIB (16 GiB) sparse disk
#   D  remap with every sector of the I/O region remapped
#   E  nbdkit --filter=cow file IMG                         (reference)
#   F  nbdkit --filter=nofilter file IMG: an empty filter layer, what
#      any filter costs before it does anything          (reference)
# fio (ioengine=nbd) runs the same workloads on every configuration,
# over the same region [0, REGION_MIB) of the export, alternating
# A B C D E F within each round, for ROUNDS rounds.  The medians and the
# ratios to A are printed and written to bench/RESULTS.md, followed by
# the output of bench/table-bench.c.
#
# Environment (defaults in brackets):
#   ROUNDS [5]          rounds of every workload on every configuration
#   RUNTIME [3]         seconds per fio job
#   IODEPTH [16]        fio iodepth of every job
#   DISK_GIB [16]       size of the sparse image
#   REGION_MIB [256]    the region fio uses (and D remaps entirely)
#   C_REMAPS [100000]   remapped sectors in C
#   CONFIGS ["A B C D E F"]   WORKLOADS [all five]; W (write-through)
#                       and G (its reference) only when asked for
#   MAX_OTHER [20]      a job during which other processes used more than
#                       this % of one CPU is run again (the run with the
#                       least such CPU is kept) ...
#   TRIES [3]           ... up to this many times in all
#   BUILDDIR [the source tree]   where make built the filter
#   REMAP_FILTER        [$BUILDDIR/filter/.libs/nbdkit-remap-filter.so]
#   RESULTS             [bench/RESULTS.md]
#   SKIP_TABLE_BENCH=1  do not build and run bench/table-bench.c
#   SHM [/dev/shm]      where the images go
#   PIN [1]             pin the servers and fio to separate CPUs (taskset):
#                       fio on the first half of the CPUs, nbdkit on the
#                       rest (2 cores: fio on CPU 0, nbdkit on CPU 1).
#                       PIN=0 lets the scheduler place them (noisier).

set -euo pipefail

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-5}
RUNTIME=${RUNTIME:-3}
IODEPTH=${IODEPTH:-16}
DISK_GIB=${DISK_GIB:-16}
REGION_MIB=${REGION_MIB:-256}
C_REMAPS=${C_REMAPS:-100000}
CONFIGS=${CONFIGS:-"A B C D E F"}
WORKLOADS=${WORKLOADS:-"randread-4k randwrite-4k seqread-1m seqwrite-1m 2conn-randrw-4k"}
BUILDDIR=${BUILDDIR:-$top}
REMAP_FILTER=${REMAP_FILTER:-$BUILDDIR/filter/.libs/nbdkit-remap-filter.so}
RESULTS=${RESULTS:-$top/bench/RESULTS.md}
SHM=${SHM:-/dev/shm}
NBDKIT=${NBDKIT:-nbdkit}
FIO=${FIO:-fio}
PYTHON=${PYTHON:-/usr/bin/python3}
[ -x "$PYTHON" ] || PYTHON=python3
PIN=${PIN:-1}
MAX_OTHER=${MAX_OTHER:-20}
TRIES=${TRIES:-3}
SECTOR=4096                      # remap-sector-size (the filter's default)

die () { echo "run-bench.sh: $*" >&2; exit 1; }
log () { echo "== $*" >&2; }

for prog in "$NBDKIT" "$FIO" nbdinfo timeout "$PYTHON" df truncate cp; do
  command -v "$prog" >/dev/null || die "$prog is not installed"
done
"$FIO" --enghelp 2>/dev/null | grep -qw nbd ||
  die "this fio has no nbd engine (fio --enghelp | grep nbd)"
[ -f "$REMAP_FILTER" ] || die "$REMAP_FILTER not found: build first (make -j2)"
case "$ROUNDS$RUNTIME$IODEPTH$DISK_GIB$REGION_MIB$C_REMAPS$MAX_OTHER$TRIES" in
  *[!0-9]*) die "ROUNDS, RUNTIME, IODEPTH, DISK_GIB, REGION_MIB, C_REMAPS, MAX_OTHER and TRIES are whole numbers" ;;
esac
if [ "$ROUNDS" -lt 1 ] || [ "$RUNTIME" -lt 1 ]; then
  die "ROUNDS and RUNTIME must be >= 1"
fi

# CPU placement.
ncpu=$(nproc)
FIO_PIN=() SERVER_PIN=() pinning="none (PIN=0)"
if [ "$PIN" != 0 ] && [ "$ncpu" -ge 2 ] && command -v taskset >/dev/null; then
  half=$(( ncpu / 2 ))
  FIO_PIN=(taskset -c "0-$(( half - 1 ))")
  SERVER_PIN=(taskset -c "$half-$(( ncpu - 1 ))")
  pinning="fio on CPU 0-$(( half - 1 )), nbdkit on CPU $half-$(( ncpu - 1 ))"
fi

# ---- Space on /dev/shm: scale down if needed. ----
# Written pages: the region in each of the 5 images and in the master,
# the cow overlay, the spares of C and D (copies of the remapped
# sectors) and the tables; the rest of every image stays sparse.
need_mib () {
  echo $(( REGION_MIB * 8 + C_REMAPS * SECTOR / 1048576 + 64 ))
}
avail_mib=$(df -Pm "$SHM" | awk 'NR == 2 { print $4 }')
mem_mib=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
[ "$mem_mib" -lt "$avail_mib" ] && avail_mib=$mem_mib
scaled=
while [ "$(need_mib)" -gt $(( avail_mib * 3 / 4 )) ]; do
  if [ "$REGION_MIB" -gt 32 ]; then
    REGION_MIB=$(( REGION_MIB / 2 ))
  elif [ "$C_REMAPS" -gt 1000 ]; then
    C_REMAPS=$(( C_REMAPS / 2 ))
  else
    die "not enough space on $SHM (${avail_mib} MiB free)"
  fi
  scaled=yes
done
# The disk must hold C's spares (2 per remap) and leave C's remaps a
# small fraction of it.
min_disk_gib=$(( (C_REMAPS * SECTOR * 40) / 1073741824 + 1 ))
[ "$DISK_GIB" -lt "$min_disk_gib" ] && DISK_GIB=$min_disk_gib
log "$SHM: ${avail_mib} MiB usable; using about $(need_mib) MiB:" \
    "disk ${DISK_GIB} GiB (sparse), region ${REGION_MIB} MiB," \
    "${C_REMAPS} remaps in C${scaled:+ (scaled down to fit)}"

REGION_BYTES=$(( REGION_MIB * 1048576 ))
REGION_SECTORS=$(( REGION_BYTES / SECTOR ))
# C: twice as many spares as remaps, in whole MiB.
C_SPARE_MIB=$(( (C_REMAPS * 2 * SECTOR + 1048575) / 1048576 ))
# D: every sector of the region, plus room.
D_SPARE_MIB=$(( REGION_MIB * 2 ))

nconf=$(wc -w <<<"$CONFIGS")
nwork=$(wc -w <<<"$WORKLOADS")
SERVER_TIMEOUT=$(( ROUNDS * nconf * nwork * TRIES * (RUNTIME + 30) + 1200 ))
FIO_TIMEOUT=$(( RUNTIME + 120 ))

# ---- Work directory, servers, cleanup. ----
work=$(mktemp -d "$SHM/remap-bench.XXXXXX")
declare -A server_pid=() nbdkit_pid=() sock=() exportsize=()
cleanup () {
  local rc=$?
  trap - EXIT INT TERM
  for c in "${!server_pid[@]}"; do
    kill -TERM "${server_pid[$c]}" 2>/dev/null || true
  done
  for c in "${!server_pid[@]}"; do
    wait "${server_pid[$c]}" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

uri_of () { echo "nbd+unix:///?socket=$1"; }

# Arguments of each configuration's serving nbdkit (after the image
# name is known).  remap-spare-size is given every time so that a
# mismatch with what is on disk is an error, not a surprise.
config_args () {
  local c=$1 img=$work/img.$1
  case $c in
    A) echo "file $img" ;;
    B) echo "--filter=$REMAP_FILTER file $img" ;;
    C) echo "--filter=$REMAP_FILTER file $img remap-spare-size=${C_SPARE_MIB}M" ;;
    D) echo "--filter=$REMAP_FILTER file $img remap-spare-size=${D_SPARE_MIB}M" ;;
    E) echo "--filter=cow file $img" ;;
    F) echo "--filter=nofilter file $img" ;;
    W) echo "--filter=$REMAP_FILTER file $img remap-write-through=yes" ;;
    G) echo "--filter=fua file $img fuamode=force" ;;
    *) die "unknown configuration $c" ;;
  esac
}

# Starts nbdkit once with --run, for preparation: prints the export
# size.  Extra arguments are parameters added to the configuration's;
# $ONCE_OPTS are extra nbdkit options.
ONCE_OPTS=
nbdkit_once () {
  local c=$1; shift
  # shellcheck disable=SC2016,SC2046,SC2086
  TMPDIR=$work/tmp timeout 1200 "$NBDKIT" $ONCE_OPTS -U - \
    --run 'nbdinfo --size "$uri"' $(config_args "$c") "$@"
}

start_server () {
  local c=$1 s=$work/$1.sock
  # shellcheck disable=SC2046
  TMPDIR=$work/tmp timeout "$SERVER_TIMEOUT" ${SERVER_PIN[@]+"${SERVER_PIN[@]}"} \
    "$NBDKIT" -f -U "$s" $(config_args "$c") 2>"$work/server-$c.log" &
  server_pid[$c]=$!
  sock[$c]=$s
  for _ in $(seq 300); do
    if [ -S "$s" ] && timeout 10 nbdinfo --size "$(uri_of "$s")" \
         >"$work/size-$c" 2>/dev/null; then
      exportsize[$c]=$(cat "$work/size-$c")
      # server_pid is timeout's; nbdkit is its child.
      local t=${server_pid[$c]}
      nbdkit_pid[$c]=$(awk '{ print $1 }' "/proc/$t/task/$t/children" 2>/dev/null ||
                       pgrep -P "$t" | head -n1)
      return 0
    fi
    kill -0 "${server_pid[$c]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/server-$c.log" >&2
  die "server $c did not start"
}

mkdir -p "$work/tmp" "$work/fio"

# ---- Images. ----
log "creating the ${DISK_GIB} GiB image, ${REGION_MIB} MiB of random data at the start"
truncate -s "${DISK_GIB}G" "$work/master"
timeout 600 dd if=/dev/urandom of="$work/master" bs=1M count="$REGION_MIB" \
  conv=notrunc status=none
for c in $CONFIGS; do
  cp --sparse=always "$work/master" "$work/img.$c"
done
rm -f "$work/master"

declare -A skipped=()
remaps_of () {
  # The "loaded" debug line of the filter, if it prints one.
  local c=$1
  ONCE_OPTS=-v nbdkit_once "$c" 2>&1 >/dev/null |
    grep -o 'generation [0-9]*, [0-9]* entries' | tail -n1 || true
}

for c in $CONFIGS; do
  case $c in
    B|W)
      # The image holds data, so internal mode formats it only when
      # told to (nbdkit-remap-filter(1), "When internal mode formats").
      log "$c: formatting (default spare area)"
      nbdkit_once "$c" remap-format=yes >/dev/null
      ;;
    C|D)
      if [ "$c" = C ]; then
        log "C: formatting, then remapping ${C_REMAPS} random sectors (remap-add-file)"
      else
        log "D: formatting, then remapping sectors 0-$(( REGION_SECTORS - 1 )) (remap-add-file)"
      fi
      size=$(nbdkit_once "$c" remap-format=yes 2>"$work/prep-$c.log") || {
        cat "$work/prep-$c.log" >&2; die "$c: formatting failed"; }
      sectors=$(( size / SECTOR ))
      if [ "$c" = C ]; then
        "$PYTHON" - "$sectors" "$C_REMAPS" >"$work/remaps-$c" <<'PY'
import random, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(5)        # the same sectors on every run
for s in sorted(rng.sample(range(n), k)):
    print(s)
PY
      else
        echo "0-$(( REGION_SECTORS - 1 ))" >"$work/remaps-$c"
      fi
      t0=$(date +%s.%N)
      if ! nbdkit_once "$c" "remap-add-file=$work/remaps-$c" \
             >/dev/null 2>"$work/prep-$c.log"; then
        if grep -q 'remap-add-file' "$work/prep-$c.log" &&
           grep -qi 'unknown parameter' "$work/prep-$c.log"; then
          skipped[$c]="the filter has no remap-add-file parameter yet"
          log "$c: SKIPPED: ${skipped[$c]}"
          continue
        fi
        cat "$work/prep-$c.log" >&2
        die "$c: remap-add-file failed"
      fi
      t1=$(date +%s.%N)
      loaded=$(remaps_of "$c")
      log "$c: remaps created in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s;" \
          "reopened: ${loaded:-(no debug line seen)}"
      echo "$c	${loaded}" >>"$work/loaded"
      ;;
  esac
done
run_configs=""
for c in $CONFIGS; do
  [ -n "${skipped[$c]:-}" ] || run_configs="$run_configs $c"
done

# ---- Servers. ----
for c in $run_configs; do
  start_server "$c"
  log "$c: server pid ${server_pid[$c]}, export ${exportsize[$c]} bytes"
done
min_export=$(for c in $run_configs; do echo "${exportsize[$c]}"; done | sort -n | head -n1)
FIO_SIZE=$REGION_BYTES
[ "$min_export" -lt "$FIO_SIZE" ] && FIO_SIZE=$(( min_export / 1048576 * 1048576 ))
log "smallest export ${min_export} bytes; fio region [0, ${FIO_SIZE})"

# ---- fio. ----
workload_args () {
  case $1 in
    randread-4k)     echo "--rw=randread --bs=4k --numjobs=1" ;;
    randwrite-4k)    echo "--rw=randwrite --bs=4k --numjobs=1" ;;
    seqread-1m)      echo "--rw=read --bs=1M --numjobs=1" ;;
    seqwrite-1m)     echo "--rw=write --bs=1M --numjobs=1" ;;
    2conn-randrw-4k) echo "--rw=randrw --rwmixread=50 --bs=4k --numjobs=2" ;;
    *) die "unknown workload $1" ;;
  esac
}

# CPU time (user + system, clock ticks) nbdkit has used so far.
cpu_ticks () {
  local p=${nbdkit_pid[$1]:-}
  if [ -n "$p" ] && [ -r "/proc/$p/stat" ]; then
    sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }'
  else
    echo 0
  fi
}

# The machine's CPU counters (first line of /proc/stat): busy, total
# and steal ticks, summed over all CPUs.
machine_ticks () {
  awk '$1 == "cpu" { busy = $2 + $3 + $4 + $7 + $8 + $9;
                     print busy, busy + $5 + $6, $9; exit }' /proc/stat
}

# % of one CPU that processes other than this nbdkit and fio used
# during a job (from its fio JSON and the counters run_fio saved).
other_cpu () {
  "$PYTHON" - "$1" "$(getconf CLK_TCK)" "$(nproc)" <<'PY'
import json, sys
path, clk_tck, ncpu = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = open(path).read()
job = json.loads(text[text.index("{"):])["jobs"][0]
f = [int(x) for x in open(path + ".cpu").read().split()]
busy, total = f[4] - f[1], f[5] - f[2]
fio = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * job["job_runtime"] / 1000.0 * clk_tck
print("%.1f" % (max(0.0, (busy - f[0] - fio) / (total / ncpu) * 100) if total > 0 else 0.0))
PY
}

run_fio () {   # config workload output [runtime]
  local c=$1 w=$2 out=$3 rt=${4:-$RUNTIME} t0 m0
  t0=$(cpu_ticks "$c")
  m0=$(machine_ticks)
  # shellcheck disable=SC2046
  timeout "$FIO_TIMEOUT" ${FIO_PIN[@]+"${FIO_PIN[@]}"} \
    "$FIO" --name="$w" --ioengine=nbd \
    --uri="$(uri_of "${sock[$c]}")" $(workload_args "$w") \
    --iodepth="$IODEPTH" --offset=0 --size="$FIO_SIZE" \
    --time_based --runtime="$rt" --group_reporting \
    --unified_rw_reporting=mixed \
    --output-format=json --output="$out" >/dev/null 2>"$out.err" || {
      cat "$out.err" >&2; die "fio $w on $c failed"; }
  echo "$(( $(cpu_ticks "$c") - t0 )) $m0 $(machine_ticks)" >"$out.cpu"
}

# Warm-up: write the whole region once through every server, so that
# every configuration starts with the same pages allocated (the cow
# overlay full, D's spares written through the filter).
for c in $run_configs; do
  timeout "$FIO_TIMEOUT" "$FIO" --name=warmup --ioengine=nbd \
    --uri="$(uri_of "${sock[$c]}")" --rw=write --bs=1M --iodepth=4 \
    --offset=0 --size="$FIO_SIZE" --output="$work/fio/warmup-$c.json" \
    >/dev/null 2>&1 || die "warm-up of $c failed"
done

total=$(( ROUNDS * $(wc -w <<<"$run_configs") * nwork ))
log "measuring: $ROUNDS rounds x $nwork workloads x configurations$run_configs," \
    "${RUNTIME} s each (about $(( total * (RUNTIME + 1) / 60 + 1 )) min)"
# Within a round each workload runs on every configuration in turn,
# A B C D E F; each round starts one configuration later (round 2:
# B C D E F A, ...) so that no configuration always runs first.
read -r -a order <<<"$run_configs"
n=0
for r in $(seq "$ROUNDS"); do
  for w in $WORKLOADS; do
    for k in $(seq 0 $(( ${#order[@]} - 1 ))); do
      c=${order[$(( (k + r - 1) % ${#order[@]} ))]}
      n=$(( n + 1 ))
      printf '  [%d/%d] round %d %-16s %s\n' "$n" "$total" "$r" "$w" "$c" >&2
      out=$work/fio/$r.$w.$c.json best=
      for try in $(seq "$TRIES"); do
        run_fio "$c" "$w" "$out.try$try"
        o=$(other_cpu "$out.try$try")
        if [ -z "$best" ] || awk -v a="$o" -v b="$best" 'BEGIN { exit !(a < b) }'; then
          best=$o
          cp "$out.try$try" "$out"
          cp "$out.try$try.cpu" "$out.cpu"
        fi
        awk -v a="$o" -v m="$MAX_OTHER" 'BEGIN { exit !(a > m) }' || break
        if [ "$try" -lt "$TRIES" ]; then
          echo "    other processes used ${o}% of a CPU: running it again" >&2
          echo "$r.$w.$c" >>"$work/reruns"
        fi
      done
    done
  done
done

for c in $run_configs; do
  kill -0 "${server_pid[$c]}" 2>/dev/null || die "server $c died during the run"
done

# ---- Report. ----
{
  echo "date	$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc	$(nproc)"
  echo "cpu	$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel	$(uname -r)"
  echo "nbdkit	$("$NBDKIT" --version | head -n1)"
  echo "fio	$("$FIO" --version)"
  echo "commit	$(cd "$top" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$top" && [ -n "$(git status --porcelain -- filter 2>/dev/null)" ] && echo ' (filter/ has uncommitted changes)')"
  echo "rounds	$ROUNDS"
  echo "runtime	$RUNTIME"
  echo "iodepth	$IODEPTH"
  echo "pinning	$pinning"
  echo "clk_tck	$(getconf CLK_TCK)"
  echo "max_other	$MAX_OTHER"
  echo "tries	$TRIES"
  echo "reruns	$(if [ -f "$work/reruns" ]; then wc -l <"$work/reruns"; else echo 0; fi)"
  echo "disk_gib	$DISK_GIB"
  echo "fio_size	$FIO_SIZE"
  echo "c_remaps	$C_REMAPS"
  echo "c_spare	${C_SPARE_MIB}M"
  echo "d_remaps	$REGION_SECTORS"
  echo "d_spare	${D_SPARE_MIB}M"
  echo "configs	$run_configs"
  echo "workloads	$WORKLOADS"
  for c in $run_configs; do echo "export_$c	${exportsize[$c]}"; done
  for c in "${!skipped[@]}"; do echo "skipped_$c	${skipped[$c]}"; done
  if [ -f "$work/loaded" ]; then sed 's/^/loaded_/' "$work/loaded"; fi
} >"$work/meta"

"$PYTHON" - "$work/meta" "$work/fio" "$work/report.md" <<'PY'
import json, os, statistics, sys

meta_file, fio_dir, out_file = sys.argv[1:4]
meta = {}
for line in open(meta_file):
    k, _, v = line.rstrip("\n").partition("\t")
    meta[k] = v
configs = meta["configs"].split()
workloads = meta["workloads"].split()
rounds = int(meta["rounds"])
clk_tck = int(meta.get("clk_tck") or 100)
ncpu = int(meta["nproc"])

def load(path):
    text = open(path).read()
    doc = json.loads(text[text.index("{"):])
    job = doc["jobs"][0]
    m = job["mixed"]
    try:
        f = [int(x) for x in open(path + ".cpu").read().split()]
    except (OSError, ValueError):
        f = [0] * 7
    ticks = f[0]
    # Server CPU time per I/O, in microseconds (0: not measured).
    cpu = ticks * 1e6 / clk_tck / m["total_ios"] if m["total_ios"] else 0
    # CPU that neither this nbdkit nor fio used while the job ran, in
    # % of one CPU: other processes on the machine (and steal).
    busy, total, steal = f[4] - f[1], f[5] - f[2], f[6] - f[3]
    secs = job["job_runtime"] / 1000.0 if job.get("job_runtime") else 0
    fio_ticks = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * secs * clk_tck
    if total > 0:
        cores = total / ncpu                      # ticks of one CPU
        other = max (0.0, (busy - ticks - fio_ticks) / cores * 100)
        stealp = steal / cores * 100
    else:
        other = stealp = 0.0
    return (m["iops"], m["bw_bytes"] / 1048576.0,
            m["clat_ns"]["percentile"]["99.000000"] / 1000.0, cpu,
            other, stealp)

res = {}
for r in range(1, rounds + 1):
    for w in workloads:
        for c in configs:
            p = os.path.join(fio_dir, f"{r}.{w}.{c}.json")
            res.setdefault((w, c), []).append(load(p))

NAMES = {
    "A": "A bare nbdkit file",
    "B": "B remap, no remaps",
    "C": "C remap, %s remaps spread" % meta["c_remaps"],
    "D": "D remap, all I/O remapped",
    "E": "E cow filter (reference)",
    "F": "F nofilter: empty filter layer (reference)",
    "W": "W remap, remap-write-through=yes",
    "G": "G fua filter, fuamode=force (reference for W)",
}
TARGET = {"B": 0.97, "C": 0.95, "D": 0.85}
def target_for(c, w):
    if c == "D" and not w.endswith("-4k"):
        return None          # D's target is on 4 KiB random I/O only
    return TARGET.get(c)

def med(vals, i):
    return statistics.median(v[i] for v in vals)

# Ratios pair each round's X with the same round's A (run within half a
# minute of each other) and take the median of those: a slow spell of
# the machine that spans several jobs cancels out, where a ratio of
# medians would compare runs minutes apart.
def paired(vals, base, i, invert=False):
    rs = [(b[i] / v[i] if invert else v[i] / b[i])
          for v, b in zip(vals, base) if v[i] and b[i]]
    return statistics.median(rs) if rs else None

lines = []
out = lines.append
out("| workload | config | IOPS | MiB/s | p99 (us) | IOPS spread "
    "| server CPU (us/IO) | other CPU (%) | IOPS ratio X/A | p99 ratio A/X "
    "| CPU ratio A/X | target |")
out("|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|")
misses = []
for w in workloads:
    base = res.get((w, "A"))
    for c in configs:
        v = res[(w, c)]
        iops, mibs, p99, cpu = med(v, 0), med(v, 1), med(v, 2), med(v, 3)
        other = max(x[4] for x in v)
        lo, hi = min(x[0] for x in v), max(x[0] for x in v)
        rng = "%.1f%%" % ((hi - lo) / iops * 100)
        t = target_for(c, w)
        if base and c != "A":
            ri = paired(v, base, 0)
            rl = paired(v, base, 2, invert=True)
            rc = paired(v, base, 3, invert=True)
            si = "%.3f" % ri
            sl = "%.3f" % rl
            sc = "%.3f" % rc if rc else "?"
            if t is not None:
                if ri < t:
                    si = "**%.3f MISS**" % ri
                    misses.append("%s %s: IOPS ratio %.3f < %.2f (%.1f%% short)"
                                  % (w, c, ri, t, (t - ri) * 100))
                if rl < t:
                    sl = "**%.3f MISS**" % rl
                    misses.append("%s %s: p99 ratio %.3f < %.2f (%.1f%% short)"
                                  % (w, c, rl, t, (t - rl) * 100))
        elif c == "A":
            si = sl = sc = "1 (base)"
        else:
            si = sl = sc = "n/a"
        ts = ">= %.2f" % t if t is not None else ""
        out("| %s | %s | %.0f | %.1f | %.0f | %s | %s | %.0f | %s | %s | %s "
            "| %s |"
            % (w, NAMES.get(c, c), iops, mibs, p99, rng,
               "%.2f" % cpu if cpu else "?", other, si, sl, sc, ts))
table = "\n".join(lines)
all_runs = [x for v in res.values() for x in v]
other_med = statistics.median(x[4] for x in all_runs)
other_max = max(x[4] for x in all_runs)
steal_max = max(x[5] for x in all_runs)

def gib(n):
    return "%.3f GiB" % (int(n) / 2**30)

hdr = []
h = hdr.append
h("# nbdkit-remap benchmark results")
h("")
h("Generated by `bench/run-bench.sh`; see bench/README.md.")
h("")
h("| | |")
h("|:---|:---|")
h("| date | %s |" % meta["date"])
h("| cores (nproc) | %s |" % meta["nproc"])
h("| CPU | %s |" % meta["cpu"])
h("| kernel | %s |" % meta["kernel"])
h("| nbdkit | %s |" % meta["nbdkit"])
h("| fio | %s |" % meta["fio"])
h("| nbdkit-remap | %s |" % meta["commit"])
h("| rounds x runtime | %s x %s s per job, medians shown |"
  % (meta["rounds"], meta["runtime"]))
h("| image | %s GiB sparse file on /dev/shm per configuration |"
  % meta["disk_gib"])
h("| fio region | [0, %d MiB) of every export, iodepth %s per connection |"
  % (int(meta["fio_size"]) // 2**20, meta["iodepth"]))
h("| CPU placement | %s |" % meta["pinning"])
h("| C | %s sectors of 4 KiB remapped at random over the disk, "
  "remap-spare-size=%s |" % (meta["c_remaps"], meta["c_spare"]))
h("| D | all %s sectors of the fio region remapped, remap-spare-size=%s |"
  % (meta["d_remaps"], meta["d_spare"]))
for c in configs:
    h("| export size %s | %s bytes (%s) |"
      % (c, meta["export_" + c], gib(meta["export_" + c])))
for k, v in meta.items():
    if k.startswith("loaded_"):
        h("| table of %s on reopen | %s |" % (k[7:], v or "(no debug line)"))
    if k.startswith("skipped_"):
        h("| %s skipped | %s |" % (k[8:], v))
h("")
h("**Targets:** B >= 0.97 on every workload, C >= 0.95 on every workload, "
  "D >= 0.85 on 4 KiB random I/O (randread-4k, randwrite-4k, "
  "2conn-randrw-4k).  Ratios are X/A for IOPS (MiB/s gives the same ratio) "
  "and A/X for p99 completion latency, so that **> 1 is better than bare "
  "nbdkit in both**; a ratio below its target is marked **MISS** (for "
  "latency as well as for IOPS).")
h("")
h("IOPS, MiB/s, p99 and server CPU are medians over the rounds; IOPS "
  "spread is (max - min) / median of the rounds, a measure of the noise.  "
  "Each ratio is the median over the rounds of that round's X against "
  "the same round's A (the jobs of one workload run one after the other "
  "in a round), so that a slow spell of the machine that spans several "
  "jobs cancels out; it may therefore differ from the ratio of the "
  "medians shown.  Server CPU is the nbdkit process's user + "
  "system time during the job divided by the I/Os fio completed.  Other "
  "CPU is the most, over the rounds, that processes other than this "
  "nbdkit and fio used during the job, in % of one CPU.  CPU ratio A/X "
  "is A's server CPU per I/O over X's (> 1 is better): it has no target, "
  "but it is the least disturbed by a busy machine, and with the server "
  "pinned to one CPU it is about what the IOPS ratio is on an idle one.")
h("")
h("CPU used by other processes during the jobs: median %.0f%%, max %.0f%% "
  "of one CPU (max steal %.0f%%).  %s job(s) were run again because "
  "other processes used more than %s%% of a CPU during them (up to %s "
  "tries, the quietest kept).%s"
  % (other_med, other_max, steal_max, meta["reruns"], meta["max_other"],
     meta["tries"],
     "  **The machine was not idle: the figures are disturbed and the "
     "ratios are less precise than the spreads suggest.**"
     if other_med > 10 else ""))
h("")
h("Workloads: randread-4k / randwrite-4k (one connection), seqread-1m / "
  "seqwrite-1m (1 MiB, one connection), 2conn-randrw-4k (two NBD "
  "connections at once, 4 KiB random 50/50 read/write, figures are the "
  "sum of both, p99 over reads and writes).")
h("")
foot = ["", "Missed targets:", ""]
foot += ["* " + m for m in misses] if misses else ["* none"]
foot.append("")
report = "\n".join(hdr) + "\n" + table + "\n" + "\n".join(foot)
open(out_file, "w").write(report + "\n")
print(report)
PY

cp "$work/report.md" "$RESULTS"

# ---- The table micro-benchmark. ----
if [ -z "${SKIP_TABLE_BENCH:-}" ]; then
  log "building and running bench/table-bench.c"
  tb=$work/table-bench
  if [ -f "$BUILDDIR/filter/.libs/libremapcore.a" ]; then
    core=("$BUILDDIR/filter/.libs/libremapcore.a")
  else
    core=()
    for f in "$top"/filter/*.c; do
      [ "$(basename "$f")" = remap.c ] || core+=("$f")
    done
  fi
  gcc -O2 -std=gnu11 -pthread -I "$top/filter" -I "$BUILDDIR" -I "$top" \
    "$top/bench/table-bench.c" "${core[@]}" "$top/tests/unit/stubs.c" \
    -lpthread -o "$tb" || die "building bench/table-bench.c failed"
  timeout 1200 "$tb" >"$work/table-bench.md" || die "table-bench failed"
  cat "$work/table-bench.md"
  { echo; cat "$work/table-bench.md"; } >>"$RESULTS"
fi
log "results written to $RESULTS"
