#!/usr/bin/env bash
# nbdkit-remap: torn metadata updates.
#
# For every N across one whole metadata update (1 .. its size, every
# 512 bytes and on both sides of every write boundary), the server is
# started with -D remap.crash_after=N and a bad sector that forces a
# remap on the first write; the write makes the filter save its table
# and the hook _exit(99)s after N bytes of that update.  The image
# must then load again (without the hook) holding either the old
# table (no remap: the sector reads its old data) or the new one (the
# remap, and the sector reads what was written), never a mix, never an
# error.  N = size + 1 must not crash at all, which also proves the
# update size computed here from the geometry is right:
#
#   per copy = table bytes written (entries * 16 rounded up to the
#              sector size, at least one sector) + header slot
#              (4096 for sector sizes up to 4096)
#   update   = 2 copies, or 3 when copy A moves: its table is written
#              at home, its header fails there, then it is written
#              again in a relocation slot, then copy B
#
# Geometries: 4096-byte sectors with an empty table; 512-byte
# sectors; 4096-byte sectors with 300 entries already (a two-sector
# table); 4096-byte sectors with header A's sector failing writes, so
# that the update moves copy A to spare sectors.  TORN_GEOMETRIES
# picks some of them (default "a b c d").
source "$(dirname "$0")/crash-lib.sh"
NBDIO="$PYTHON $crash_dir/nbdio.py"

geometries=${TORN_GEOMETRIES:-a b c d}
failures=0
cycles=0
total_old=0
total_new=0
total_repairs=0

failure ()
{
  failures=$((failures + 1))
  echo "$test_name: FAIL: $*"
}

round_up () { echo $(( ($1 + $2 - 1) / $2 * $2 )); }

# geometry NAME SECTOR_SIZE SPARE_SIZE PREPOPULATED_ENTRIES BAD_HEADER_A
geometry ()
{
  local name=$1 ss=$2 spare=$3 prepop=$4 bad_home=$5 writes=2 bad_lines
  local img=$work/$name.img pristine=$work/$name.pristine list=$work/$name.bad
  local x=5 e0 tw hs per total n rc got state entries out
  local old=0 new=0 repairs=0 first_new="" last_old="" here=0
  local common=(remap-sector-size="$ss" remap-spare-size="$spare")
  local prep_args=() prep_offs=() p

  rm -f "$img" "$pristine"
  truncate -s 8M "$img"
  : >"$list"
  [ "$prepop" -gt 0 ] && prep_args=(remap-add=100-$((100 + prepop - 1)))

  # The starting image: sectors 0-15 hold 0x11; the prepopulated
  # sectors are remapped and hold 0x33.
  if ! srv_start prep "$work/prep.log" \
       --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
       badsector-file="$list" badsector-sector-size="$ss" "${common[@]}" \
       "${prep_args[@]}" ||
     ! $NBDIO write "$SRV_SOCK" 0 $((16 * ss)) 11 >/dev/null; then
    srv_kill prep KILL; srv_reap prep
    grep -v debug "$work/prep.log"
    failure "$name: preparing the image failed"
    return
  fi
  if [ "$prepop" -gt 0 ]; then
    $NBDIO write "$SRV_SOCK" $((100 * ss)) $((prepop * ss)) 33 >/dev/null ||
      failure "$name: preparing write failed"
    for p in 100 $((100 + prepop / 2)) $((100 + prepop - 1)); do
      prep_offs+=($((p * ss)))
    done
  fi
  srv_kill prep TERM
  srv_reap prep
  [ "$SRV_RC" -eq 0 ] || failure "$name: preparing server exited $SRV_RC"
  cp "$img" "$pristine"

  e0=$(le_u32 "$img" $(( $(header_b "$img") + 152 )))
  [ "$e0" -eq "$prepop" ] ||
    failure "$name: expected $prepop entries after preparing, found $e0"
  tw=$(round_up $(( (e0 + 1) * 16 )) "$ss")
  hs=$(( ss > 4096 ? ss : 4096 ))
  per=$(( tw + hs ))
  bad_lines="write $x"
  if [ "$bad_home" -eq 1 ]; then
    writes=3
    bad_lines+=$'\n'"write $(( $(le_u64 "$img" $(( $(header_b "$img") + 88 ))) / ss ))"
  fi
  total=$(( writes * per ))
  echo "$test_name: geometry $name: sector size $ss, $e0 entries before," \
       "update = $writes x ($tw table + $hs header) = $total bytes"

  # Every 512 bytes, 1/511/513, and both sides of each write boundary
  # (table A, header A, table B, header B), and one past the end.
  local ns=(1 511 513)
  for ((n = 512; n <= total; n += 512)); do ns+=("$n"); done
  for b in "$tw" "$per" $((per + tw)) $((2 * per)) $((2 * per + tw)) \
           "$total"; do
    [ "$b" -le "$total" ] || continue
    ns+=($((b - 1)) "$b" $((b + 1)))
  done
  mapfile -t ns < <(printf '%s\n' "${ns[@]}" | sort -n -u)

  for n in "${ns[@]}"; do
    cycles=$((cycles + 1))
    cp "$pristine" "$img"
    echo "$bad_lines" >"$list"
    if ! srv_start hook "$work/hook.log" -D remap.crash_after="$n" \
         --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" file "$img" \
         badsector-file="$list" badsector-sector-size="$ss" "${common[@]}"
    then
      failure "N=$n: the server with the hook did not start ($SRV_RC)"
      continue
    fi
    $NBDIO write "$SRV_SOCK" $((x * ss)) "$ss" 22 >"$work/w.out" 2>&1
    rc=$?
    if [ "$n" -le "$total" ]; then
      srv_reap hook 5000
      if [ "$SRV_RC" -ne 99 ]; then
        failure "$name N=$n: expected the hook's exit status 99, got $SRV_RC"
        continue
      fi
      [ $rc -ne 0 ] ||
        failure "$name N=$n: the write was acknowledged by a server that died"
    else
      # Past the end of the update: no crash, the write succeeds.
      if ! srv_alive hook; then
        srv_reap hook
        failure "$name N=$n (update size + 1): the server exited ($SRV_RC);" \
                "the update is bigger than the $total bytes computed"
        continue
      fi
      [ $rc -eq 0 ] || failure "$name N=$n: the write failed: $(cat "$work/w.out")"
      srv_kill hook TERM
      srv_reap hook
    fi

    # Restart without the hook: old table or new table, nothing else.
    srv_start check "$work/check.log" -v --filter="$REMAP_FILTER" \
      file "$img" "${common[@]}" remap-control="$work/ctl.sock"
    # One client: the data, then the table (control socket "list").
    out=$($NBDIO probe "$SRV_SOCK" "$work/ctl.sock" "$ss" $((x * ss)) \
            "${prep_offs[@]}")
    if [ $? -ne 0 ] || ! srv_alive check; then
      srv_kill check KILL; srv_reap check
      failure "$name N=$n: the image does not load after the crash:" \
              "$(grep -v 'debug' "$work/check.log" | tail -3)"
      continue
    fi
    srv_kill check TERM
    srv_reap check
    [ "$SRV_RC" -eq 0 ] || failure "$name N=$n: check server exit $SRV_RC"
    got=$(echo "$out" | head -n $((1 + ${#prep_offs[@]})))
    entries=$(echo "$out" | tail -n +$((2 + ${#prep_offs[@]})))
    read -r -d '' -a got <<<"$got"
    local nent mapped=0
    nent=$(echo "$entries" | grep -c ':')
    echo "$entries" | grep -qx "$x:remapped" && mapped=1
    if [ "${got[0]}" = 11 ] && [ $mapped -eq 0 ] && [ "$nent" -eq "$e0" ]; then
      state=old
    elif [ "${got[0]}" = 22 ] && [ $mapped -eq 1 ] &&
         [ "$nent" -eq $((e0 + 1)) ]; then
      state=new
    else
      state=mixed
      failure "$name N=$n: neither the old nor the new table: sector $x" \
              "reads ${got[0]}, remapped=$mapped, $nent entries" \
              "(old: $e0, new: $((e0 + 1)))"
    fi
    for p in "${got[@]:1}"; do
      [ "$p" = 33 ] || {
        failure "$name N=$n: a remap saved before the crash lost its data" \
                "(read $p)"; break; }
    done
    if grep -q "repairing" "$work/check.log"; then
      repairs=$((repairs + 1))
      [ -n "$TORN_VERBOSE" ] && grep -o "repairing.*" "$work/check.log"
    fi
    case $state in
      old) old=$((old + 1)); last_old=$n
           [ -n "$first_new" ] && failure "$name N=$n: old table after" \
             "N=$first_new already gave the new one" ;;
      new) new=$((new + 1)); [ -z "$first_new" ] && first_new=$n ;;
    esac
    [ -n "$TORN_VERBOSE" ] && echo "$name N=$n: $state"
    here=$((here + 1))
  done
  echo "$test_name: geometry $name: $here crash points, old table $old," \
       "new table $new (first new at N=$first_new, last old at" \
       "N=$last_old), $repairs restarts repaired a torn or stale copy"
  total_old=$((total_old + old))
  total_new=$((total_new + new))
  total_repairs=$((total_repairs + repairs))
  rm -f "$pristine"
}

for g in $geometries; do
  case $g in
    a) geometry a 4096 256K 0 0 ;;
    b) geometry b 512 256K 0 0 ;;
    c) geometry c 4096 2M 300 0 ;;
    d) geometry d 4096 256K 0 1 ;;
    *) fail "unknown geometry $g" ;;
  esac
done

echo "$test_name: cycles: $cycles, old table: $total_old, new table:" \
     "$total_new, repairs: $total_repairs, failures: $failures"
[ $failures -eq 0 ] || exit 1
exit 0
