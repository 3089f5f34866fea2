#!/usr/bin/env bash
# nbdkit-remap crash test: run-crash.sh [CYCLES]  (default 50)
#
# Each cycle starts nbdkit with the remap filter over the bad-sector
# test filter and the file plugin, runs crash-client.py's workload
# (several connections, random FUA writes and flushes) while the
# bad-sector list keeps gaining new failing sectors (so remaps and
# metadata syncs happen all the time, some of them on spares that then
# fail too, and once per image each metadata copy's home fails so that
# the copy moves to spare sectors), and SIGKILLs the server at a random moment.  Then it
# restarts the server (half the time without the bad-sector filter),
# checks that the table loads, and verifies every sector against the
# client's journal: nothing covered by a completed flush or FUA write
# is lost, no sector shows another's block, no checksum fails.
#
# A new image is formatted every CRASH_EPOCH cycles (or once half the
# spares are used), so the spare pool never runs dry.
#
# Tunables (environment): CRASH_SEED, CRASH_SIZE (image, default 64M),
# CRASH_EPOCH (40), CRASH_LOAD_MS (300-700: the client's run time),
# CRASH_THREADS (4), CRASH_HOT (4 KiB blocks the workload writes, 4096),
# CRASH_SECTOR_SIZES (remap sector sizes, one picked per image:
# "4096 512"; with 512 a failing sector is part of a client block).
# KEEP_TMP=1 keeps the scratch files of a failed run.
source "$(dirname "$0")/crash-lib.sh"

cycles=${1:-50}
seed=${CRASH_SEED:-$(( $(date +%s) % 100000 ))}
RANDOM=$seed
size=${CRASH_SIZE:-64M}
epoch_len=${CRASH_EPOCH:-40}
load=${CRASH_LOAD_MS:-300-700}
load_min=${load%-*}
load_max=${load#*-}
threads=${CRASH_THREADS:-4}
hot=${CRASH_HOT:-4096}
read -r -a sizes <<<"${CRASH_SECTOR_SIZES:-4096 512}"
ss=4096
units=$hot                      # the hot area in sectors of $ss

echo "$test_name: $cycles cycles, seed $seed (CRASH_SEED=$seed reproduces" \
     "the choices), image $size in $work"

img=$work/disk.img
list=$work/bad.txt
journal=$work/journal
failures=0
cycle=0
epoch=0
new_epoch=1
spare_first=0
spare_count=0
meta_homes=()                   # sectors under each copy's home, unfailed

# Totals.
t_writes=0 t_flushes=0 t_fua=0 t_remaps=0 t_syncs=0 t_repairs=0
t_badlines=0 t_idle_kills=0 t_lost=0 t_spare_bad=0 t_torn=0 t_meta_bad=0
t_moves=0
prev_entries=0 prev_gen=0

failure ()
{
  failures=$((failures + 1))
  echo "$test_name: cycle $cycle (epoch $epoch): FAIL: $*"
  if [ -n "$KEEP_TMP" ] && [ ! -d "$tmp/fail-$cycle" ]; then
    mkdir -p "$tmp/fail-$cycle"
    cp "$work"/*.log "$list" "$journal" "$tmp/fail-$cycle/" 2>/dev/null
    cp --sparse=always "$img" "$tmp/fail-$cycle/" 2>/dev/null
    echo "$test_name: kept $tmp/fail-$cycle"
  fi
}

# One new line for the bad-sector list: a failing sector (or a short
# range, or a once-only failure) where the workload writes, now and
# then a sector of the spare area, so that a spare fails and is
# retired, and rarely a sector under a metadata copy's home (each home
# once per image, so that a copy always has somewhere left to go).
bad_line ()
{
  local r s e
  rnd 100; r=$R
  rnd "$units"; s=$R
  if [ $r -lt 2 ] && [ ${#meta_homes[@]} -gt 0 ]; then
    rnd ${#meta_homes[@]}
    t_meta_bad=$((t_meta_bad + 1))
    echo "write ${meta_homes[$R]}"
    meta_homes=("${meta_homes[@]:0:$R}" "${meta_homes[@]:$((R + 1))}")
  elif [ $r -lt 8 ] && [ "$spare_count" -gt 0 ]; then
    rnd "$spare_count"
    t_spare_bad=$((t_spare_bad + 1))
    echo "write $(( spare_first + R ))"
  elif [ $r -lt 18 ]; then
    rnd 6; e=$(( s + R ))
    [ $e -lt "$units" ] || e=$((units - 1))
    echo "write $s-$e"
  elif [ $r -lt 25 ]; then
    echo "write-once $s"
  else
    echo "write $s"
  fi
}

parse_loaded ()
{
  # "remap: loaded the disk: generation G, E entries, U of T spares used"
  sed -n 's/.*remap: loaded [^:]*: generation \([0-9]*\), \([0-9]*\) entries, \([0-9]*\) of \([0-9]*\) spares used.*/\1 \2 \3 \4/p' "$1" | tail -1
}

start_ms=$(now_ms)
while [ $cycle -lt "$cycles" ]; do
  cycle=$((cycle + 1))
  if [ $new_epoch -eq 1 ] || [ $(( (cycle - 1) % epoch_len )) -eq 0 ]; then
    rm -f "$img" "$journal"
    truncate -s "$size" "$img"
    : >"$list"
    rnd ${#sizes[@]}
    ss=${sizes[$R]}
    units=$(( hot * 4096 / ss ))
    epoch=$((epoch + 1))
    new_epoch=0
    spare_count=0
    meta_homes=()
    prev_entries=0
    prev_gen=0
  fi

  # ---- Load, with failing sectors arriving all the time. ----
  # The test source fails writes at once (no writeback sectors), so the
  # plugin has no write cache: a FUA write's once-only failure is its
  # own, not an earlier write's writeback error (remap-plugin-cache).
  verify_opt=""
  rnd 4; [ $R -eq 0 ] && verify_opt="remap-verify=yes"
  if ! srv_start load "$work/load.log" \
       --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
       file "$img" badsector-file="$list" badsector-sector-size="$ss" \
       remap-spare-size=10% remap-sector-size="$ss" remap-plugin-cache=no \
       $verify_opt
  then
    failure "the server exited ($SRV_RC) before serving:" \
            "$(tail -3 "$work/load.log")"
    new_epoch=1
    continue
  fi
  # A new image is formatted at the first client: let that finish
  # before any kill, so that every restart has a table to load.
  if [ "$prev_gen" -eq 0 ] && ! srv_wait_serving load; then
    failure "the server did not format a new image:" \
            "$(tail -3 "$work/load.log")"
    new_epoch=1
    continue
  fi
  rnd $(( load_max - load_min + 1 )); dur=$(( load_min + R ))
  run_bg cpid "$work/client.out" $PYTHON "$CLIENT" write --socket "$SRV_SOCK" \
    --journal "$journal" --threads "$threads" --sectors "$hot" \
    --duration "$(printf '0.%03d' "$dur")" --seed "$RANDOM" \
    --allow-no-server
  # The kill lands anywhere in the run, or (1 in 8) after it ended.
  rnd 8
  if [ $R -eq 0 ]; then
    rnd 200; kill_at=$(( dur + 100 + R ))
    t_idle_kills=$((t_idle_kills + 1))
  else
    rnd "$dur"; kill_at=$(( 30 + R ))
  fi
  t0=$(now_ms)
  while [ $(( $(now_ms) - t0 )) -lt $kill_at ]; do
    bad_line >>"$list"
    t_badlines=$((t_badlines + 1))
    rnd 5; sleep 0.0$(( 2 + R ))
  done
  if ! srv_alive load; then
    failure "the server died by itself before the kill:" \
            "$(grep -v 'debug' "$work/load.log" | tail -5)"
  fi
  srv_kill load KILL
  srv_reap load 5000
  t_moves=$(( t_moves + $(grep -c "moved it to spare sectors" "$work/load.log") ))
  reap_bg "$cpid"
  crc=$?
  case $crc in
    0) ;;
    3) failure "the workload saw I/O errors while the server was up" ;;
    *) failure "the workload client failed (status $crc):" \
               "$(tail -5 "$work/client.out")" ;;
  esac

  # ---- Restart, load the table, verify. ----
  extra=()
  rnd 2; [ $R -eq 0 ] && extra=(--filter="$BADSECTOR_FILTER")
  bs=()
  [ ${#extra[@]} -gt 0 ] &&
    bs=(badsector-file="$list" badsector-sector-size="$ss")
  if ! srv_start check "$work/check.log" -v \
       --filter="$REMAP_FILTER" "${extra[@]}" file "$img" "${bs[@]}" \
       remap-spare-size=10% remap-sector-size="$ss"; then
    failure "restart: nbdkit exited ($SRV_RC) at once:" \
            "$(grep -v debug "$work/check.log" | tail -3)"
    new_epoch=1
    continue
  fi
  atomic=()
  [ "$ss" -ge 4096 ] && atomic=(--atomic-blocks)
  vout=$(timeout 120 $PYTHON "$CLIENT" verify --socket "$SRV_SOCK" \
           --journal "$journal" --sectors "$hot" --settle --strict-acked \
           "${atomic[@]}" 2>&1)
  vrc=$?
  srv_kill check TERM
  srv_reap check 10000
  if [ $vrc -ne 0 ]; then
    echo "$vout"
    if grep -q "refusing\|damaged" "$work/check.log"; then
      failure "restart: the table did not load:" \
              "$(grep -v debug "$work/check.log" | grep -i 'remap' | tail -3)"
    else
      failure "verify failed (status $vrc)"
    fi
    new_epoch=1
    continue
  fi
  [ "$SRV_RC" -eq 0 ] ||
    failure "the checking server exited with status $SRV_RC on SIGTERM"
  read -r gen entries used total <<<"$(parse_loaded "$work/check.log")"
  if [ -z "$gen" ]; then
    failure "no 'loaded' line in the restart log"
    new_epoch=1
    continue
  fi
  if grep -q "repairing" "$work/check.log"; then
    t_repairs=$((t_repairs + 1))
    echo "$test_name: cycle $cycle: $(grep -o 'repairing.*' "$work/check.log")"
  fi
  if [ "$entries" -lt "$prev_entries" ]; then
    failure "the table shrank from $prev_entries to $entries entries"
  fi
  t_remaps=$(( t_remaps + entries - prev_entries ))
  t_syncs=$(( t_syncs + gen - prev_gen ))
  prev_entries=$entries
  prev_gen=$gen
  if [ "$spare_count" -eq 0 ]; then
    hb=$(header_b "$img")
    spare_first=$(( $(le_u64 "$img" $((hb + 64))) / ss ))
    spare_count=$(le_u32 "$img" $((hb + 72)))
    # Header A or table A, then table B or header B.
    rnd 2; meta_homes=($(( $(le_u64 "$img" $((hb + 88 + 16*R))) / ss )))
    rnd 2; meta_homes+=($(( $(le_u64 "$img" $((hb + 112 - 16*R))) / ss )))
  fi
  [ "$used" -gt $(( total / 2 )) ] && new_epoch=1
  read -r w f u <<<"$(sed -n 's/.*writes=\([0-9]*\).* fua=\([0-9]*\) flushes=\([0-9]*\).*/\1 \3 \2/p' "$work/client.out")"
  t_writes=$(( t_writes + ${w:-0} ))
  t_flushes=$(( t_flushes + ${f:-0} ))
  t_fua=$(( t_fua + ${u:-0} ))
  lost=$(echo "$vout" | sed -n 's/.*unflushed_writes_not_kept=\([0-9]*\).*/\1/p')
  t_lost=$(( t_lost + ${lost:-0} ))
  torn=$(echo "$vout" | sed -n 's/.*torn_unflushed=\([0-9]*\).*/\1/p')
  t_torn=$(( t_torn + ${torn:-0} ))
  if [ -n "$CRASH_VERBOSE" ]; then
    echo "cycle $cycle: load ${dur} ms, kill at ${kill_at} ms;" \
         "$(cat "$work/client.out")"
    echo "cycle $cycle: ss $ss, gen $gen, $entries entries, $used/$total spares;" \
         "$vout"
  fi
  if [ $((cycle % 50)) -eq 0 ]; then
    echo "$test_name: $cycle cycles, $failures failures," \
         "$(( ($(now_ms) - start_ms) / 1000 )) s"
  fi
done

# The checker itself must be able to fail: damage the final image and
# the journal's claims, one fault at a time (crash-client.py selftest).
if [ -s "$journal" ] && [ $new_epoch -eq 0 ]; then
  if srv_start check "$work/selftest.log" --filter="$REMAP_FILTER" \
       file "$img" remap-spare-size=10% remap-sector-size="$ss"; then
    $PYTHON "$CLIENT" selftest --socket "$SRV_SOCK" --journal "$journal" \
      --image "$img" >"$work/selftest.out" 2>&1
    src=$?
    srv_kill check TERM
    srv_reap check
    sed "s/^/$test_name: /" "$work/selftest.out"
    [ $src -eq 0 ] || failure "the checker's self-test failed"
  else
    failure "could not start the server for the checker's self-test"
  fi
fi

secs=$(( ($(now_ms) - start_ms) / 1000 ))
echo "$test_name: cycles run: $cycle (epochs: $epoch), failures: $failures," \
     "time: $secs s, seed $seed"
echo "$test_name: workload: $t_writes writes, $t_fua FUA, $t_flushes flushes;" \
     "$t_badlines bad-sector lines added ($t_spare_bad in the spare area," \
     "$t_meta_bad under a metadata copy's home, $t_moves copies moved);" \
     "$t_idle_kills kills after the workload ended"
echo "$test_name: persisted by the killed servers: $t_remaps new table" \
     "entries, $t_syncs metadata generations; $t_repairs restarts repaired" \
     "a metadata copy; $t_lost sectors read back an older (unflushed)" \
     "version than last written, as allowed; $t_torn blocks read back" \
     "torn by an unacknowledged write (512-byte remap sectors only)"
[ $failures -eq 0 ] || exit 1
exit 0
