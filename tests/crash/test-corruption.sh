#!/usr/bin/env bash
# nbdkit-remap: damaged metadata.
#
# An image with three remapped sectors (and a retired spare) is
# damaged in one metadata copy at a time, then in both: a byte flipped
# (magic, geometry, generation, entry count, checksums, table entries),
# the header zeroed, the table zeroed or cut short, the whole copy
# zeroed.  For each
# damage the filter must either
#   - start from the good copy, say which copy was bad (the "repairing"
#     message naming it, the other one valid), serve the right data on
#     the remapped sectors, and repair the bad copy (a second start is
#     quiet); or
#   - refuse to start, say what is wrong, and leave every byte of the
#     image as it was (never format over it).
# With one good copy left, refusing counts as a failure: the data to
# start safely is there.
#
# Then: the same with the table in a spare file (remap-spare=), and in
# internal mode the image truncated by a few sectors or grown.
#
# CORRUPT_FULL=1 flips more header fields.
source "$(dirname "$0")/crash-lib.sh"
NBDIO="$PYTHON $crash_dir/nbdio.py"

ss=4096
failures=0
cases=0
informational=
started_ok=0
refused_ok=0
failures_list=""

failure ()
{
  failures=$((failures + 1))
  failures_list="$failures_list
  $*"
  echo "$test_name: FAIL: $*"
}

# damage FILE OFFSET LENGTH flip|zero|random
damage ()
{
  $PYTHON - "$@" <<'EOF'
import os, random, sys
path, off, length, how = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with open(path, "r+b") as f:
    f.seek(off)
    old = f.read(length)
    if how == "flip":
        new = bytes(b ^ 0xff for b in old)
    elif how == "zero":
        new = bytes(len(old))
    else:
        new = random.Random(off).randbytes(len(old))
    f.seek(off)
    f.write(new)
EOF
}

# ---- The image: data, three remaps, one retired spare. ----
# make_image IMG LIST [SPAREFILE]
make_image ()
{
  local img=$1 list=$2 spare=$3 args=() hb sp
  rm -f "$img" "$spare"
  truncate -s 16M "$img"
  : >"$list"
  if [ -n "$spare" ]; then
    args=(remap-spare="$spare")
  fi
  srv_start prep "$work/prep.log" --filter="$REMAP_FILTER" \
    --filter="$BADSECTOR_FILTER" file "$img" badsector-file="$list" \
    remap-spare-size=1M "${args[@]}" ||
    fail "cannot start the preparing server: $(cat "$work/prep.log")"
  $NBDIO write "$SRV_SOCK" 0 $((64 * ss)) 41 >/dev/null ||
    fail "preparing write failed"
  if [ -z "$spare" ]; then
    # Spare 0 of the internal region fails: its sector is retired and
    # the first remap moves on to spare 1.
    hb=$(header_b "$img")
    sp=$(( $(le_u64 "$img" $((hb + 64))) / ss ))
    echo "write $sp" >"$list"
  fi
  printf 'write 3\nwrite 10\nwrite 20\n' >>"$list"
  $NBDIO write "$SRV_SOCK" $((3 * ss)) "$ss" 51 >/dev/null &&
  $NBDIO write "$SRV_SOCK" $((10 * ss)) "$ss" 52 >/dev/null &&
  $NBDIO write "$SRV_SOCK" $((20 * ss)) "$ss" 53 >/dev/null ||
    fail "the writes to the failing sectors failed"
  srv_kill prep TERM
  srv_reap prep
  [ "$SRV_RC" -eq 0 ] || fail "the preparing server exited $SRV_RC"
}

# Expected data: sector -> fill byte.
offsets=(0 $((3 * ss)) $((4 * ss)) $((10 * ss)) $((20 * ss)) $((63 * ss)))
expect=(41 51 41 52 53 41)

# check_start NAME IMG DAMAGE ARGS...
#   DAMAGE: A or B   one copy damaged: must start from the other
#           AB       both damaged, still recognisable (magic intact):
#                    must refuse, naming the damaged copies
#           AB0      both headers unrecognisable (no magic anywhere):
#                    must refuse; saying that there is no metadata but
#                    data is fine, since nothing is left to recognise
#           SIZE     the disk was truncated or grown under intact
#                    copies: must refuse, saying the metadata does not
#                    fit this disk (not "there is no metadata")
check_start ()
{
  local name=$1 img=$2 bad=$3
  shift 3
  local before after out i got ok=1 rc
  cases=$((cases + 1))
  before=$(file_md5 "$img")
  [ -n "$spare_file" ] && before="$before $(file_md5 "$spare_file")"
  if ! srv_start chk "$work/chk.log" -v --filter="$REMAP_FILTER" \
       file "$img" remap-control="$work/ctl.sock" "$@"; then
    rc=$SRV_RC
  else
    out=$($NBDIO probe "$SRV_SOCK" "$work/ctl.sock" "$ss" "${offsets[@]}")
    rc=$?
    if [ $rc -ne 0 ] || ! srv_alive chk; then
      srv_kill chk KILL
      srv_reap chk
      rc=$SRV_RC
    else
      rc=started
    fi
  fi
  if [ "$rc" != started ]; then
    # Refused.
    after=$(file_md5 "$img")
    [ -n "$spare_file" ] && after="$after $(file_md5 "$spare_file")"
    local why errs
    errs=$(grep -v 'debug:' "$work/chk.log")
    why=$(echo "$errs" | grep -m1 -i 'remap\|error' | sed 's/^nbdkit: //')
    echo "$test_name: $name: refused (status $rc): $why"
    if [ "$after" != "$before" ]; then
      failure "$name: refused to start but modified the image"
      return
    fi
    if [ "$rc" = 0 ]; then
      failure "$name: exited with status 0"
      return
    fi
    case $bad in
      A|B)
        failure "$name: refused to start although copy" \
                "$( [ "$bad" = A ] && echo B || echo A) is intact"
        return ;;
      AB)
        if ! echo "$errs" | grep -qi "damaged"; then
          failure "$name: the refusal does not name the damaged copies: $why"
          return
        fi ;;
      AB0)
        if [ -z "$why" ]; then
          failure "$name: refused without a message"
          return
        fi ;;
      SIZE)
        if ! echo "$errs" |
             grep -qi "formatted for\|disk size\|truncat\|shrank\|grown\|damaged"
        then
          failure "$name: refused safely, but the message does not say the" \
                  "disk no longer matches its metadata (copy A is intact" \
                  "on the disk); it says: $why"
          return
        fi ;;
    esac
    refused_ok=$((refused_ok + 1))
    return
  fi

  # Started: the data must be right, and the table complete.
  srv_kill chk TERM
  srv_reap chk
  mapfile -t got <<<"$out"
  local wrong="" s
  for i in "${!offsets[@]}"; do
    [ "${got[$i]}" = "${expect[$i]}" ] ||
      wrong="$wrong byte ${offsets[$i]} reads ${got[$i]} (expected ${expect[$i]});"
  done
  for s in 3 10 20; do
    printf '%s\n' "${got[@]}" | grep -qx "$s:remapped" ||
      wrong="$wrong sector $s not remapped;"
  done
  if [ "$bad" != A ] && [ "$bad" != B ]; then
    if [ -n "$informational" ]; then
      echo "$test_name: NOTE: $name: started (no metadata left to find):" \
           "$(grep -o 'remap: formatted.*' "$work/chk.log");$wrong"
      return
    fi
    failure "$name: started although no copy is usable ($bad):" \
            "$(grep -o 'remap: formatted.*\|remap: loaded.*' "$work/chk.log");$wrong"
    return
  fi
  if [ -n "$wrong" ]; then
    failure "$name: started with a wrong table:$wrong"
    ok=0
  fi
  local line
  line=$(grep -o "repairing the metadata.*" "$work/chk.log")
  if [ -z "$line" ]; then
    failure "$name: started without saying copy $bad was damaged"
    return
  fi
  if ! echo "$line" | grep -q "copy $bad at offset [0-9]*: [^v]" ||
     echo "$line" | grep -q "copy $bad at offset [0-9]*: valid"; then
    failure "$name: the message does not name copy $bad as bad: $line"
    ok=0
  fi
  # A second start is quiet: the copy was repaired.
  srv_start chk2 "$work/chk2.log" -v --filter="$REMAP_FILTER" file "$img" \
    "$@" && srv_wait_serving chk2 5000
  if ! srv_alive chk2; then
    srv_reap chk2
    failure "$name: the repaired image does not start again"
    return
  fi
  srv_kill chk2 TERM
  srv_reap chk2
  if grep -q "repairing" "$work/chk2.log"; then
    failure "$name: still repairing on the second start (not repaired)"
    ok=0
  fi
  [ $ok -eq 1 ] && started_ok=$((started_ok + 1))
  [ $ok -eq 1 ] && echo "$test_name: $name: started from the good copy," \
                        "repaired: ${line#repairing the metadata of }"
}

# ---- Internal mode. ----
img=$work/disk.img
list=$work/bad.txt
pristine=$work/pristine.img
spare_file=""
make_image "$img" "$list"
cp "$img" "$pristine"
hb=$(header_b "$img")
ha=$(le_u64 "$img" $((hb + 88)))
ta=$(le_u64 "$img" $((hb + 104)))
tb=$(le_u64 "$img" $((hb + 112)))
tbytes=$(le_u64 "$img" $((hb + 80)))
nent=$(le_u32 "$img" $((hb + 152)))
echo "$test_name: internal: header A $ha, table A $ta, table B $tb," \
     "header B $hb, $nent entries (3 remapped, 1 retired spare)"
[ "$nent" -eq 4 ] || fail "expected 4 table entries, found $nent"

# field name:offset-in-header:length
fields="magic:0:1 geometry-disk-size:32:1 geometry-crc:136:1 generation:144:1
entry-count:152:1 header-crc:4092:1"
[ -n "$CORRUPT_FULL" ] && fields="$fields version:16:1 sector-size:25:1
spare-count:72:1 table-offset:104:1 uuid:120:1 copy-index:140:1 counter:200:1
header-random:0:4096"
tfields="entry0-sector:0:1 entry0-spare:8:1 entry0-state:12:1
entry3-retired-spare:56:1"

for copies in A B AB; do
  for f in $fields; do
    IFS=: read -r fname off len <<<"$f"
    cp "$pristine" "$img"
    how=flip
    [ "$fname" = header-random ] && how=random
    case $copies in *A*) damage "$img" $((ha + off)) "$len" "$how" ;; esac
    case $copies in *B*) damage "$img" $((hb + off)) "$len" "$how" ;; esac
    kind=$copies
    [ "$copies" = AB ] && case $fname in magic|header-random) kind=AB0 ;; esac
    check_start "internal $copies flip $fname" "$img" "$kind" \
      remap-spare-size=1M
  done
  for f in $tfields; do
    IFS=: read -r fname off len <<<"$f"
    cp "$pristine" "$img"
    case $copies in *A*) damage "$img" $((ta + off)) "$len" flip ;; esac
    case $copies in *B*) damage "$img" $((tb + off)) "$len" flip ;; esac
    check_start "internal $copies flip $fname" "$img" "$copies" \
      remap-spare-size=1M
  done
  for z in header table table-tail copy; do
    cp "$pristine" "$img"
    for c in A B; do
      case $copies in *$c*) ;; *) continue ;; esac
      h=$ha t=$ta
      [ $c = B ] && h=$hb t=$tb
      case $z in
        header) damage "$img" "$h" 4096 zero ;;
        table) damage "$img" "$t" "$tbytes" zero ;;
        # A table cut short: entries from the third one on are gone.
        table-tail) damage "$img" $((t + 32)) $((tbytes - 32)) zero ;;
        copy) damage "$img" "$h" 4096 zero
              damage "$img" "$t" "$tbytes" zero ;;
      esac
    done
    kind=$copies
    [ "$copies" = AB ] && case $z in header|copy) kind=AB0 ;; esac
    check_start "internal $copies zero-$z" "$img" "$kind" \
      remap-spare-size=1M
  done
done

# Header B lost, but the geometry parameters given explicitly.
cp "$pristine" "$img"
damage "$img" "$hb" 4096 zero
check_start "internal B zero-header, remap-sector-size=4096 given" "$img" B \
  remap-spare-size=1M remap-sector-size=4096

# ---- Internal mode: the image truncated by a few sectors, or grown. ----
for t in 512 4096 12288 65536; do
  cp "$pristine" "$img"
  truncate -s -"$t" "$img"
  # Both copies are cut off from where they belong: it must refuse.
  check_start "internal image truncated by $t bytes" "$img" SIZE \
    remap-spare-size=1M
done
# Cut well into the data area: the region a fresh format would use now
# lies on sectors that were never written (zeros).
# Both copies are gone with the cut, so nothing is left to recognise:
# formatting the (zero) new end is the documented behaviour.  Reported,
# not counted.
cp "$pristine" "$img"
truncate -s 12M "$img"
informational=1
check_start "internal image truncated from 16M to 12M" "$img" SIZE \
  remap-spare-size=1M
informational=
cp "$pristine" "$img"
truncate -s +16K "$img"
check_start "internal image grown by 16K" "$img" SIZE remap-spare-size=1M
# Grown by more than the region (like qemu-img resize): the new end is
# all zeros, but both copies are intact where they were.
cp "$pristine" "$img"
truncate -s 20M "$img"
check_start "internal image grown from 16M to 20M" "$img" SIZE \
  remap-spare-size=1M

# ---- External mode: the table in a spare file. ----
img=$work/ext.img
spare_file=$work/ext.spare
make_image "$img" "$list" "$spare_file"
cp "$spare_file" "$work/ext.pristine"
shb=$(header_b "$spare_file")
sta=$(le_u64 "$spare_file" $((shb + 104)))
stb=$(le_u64 "$spare_file" $((shb + 112)))
echo "$test_name: external: header A 0, table A $sta, table B $stb," \
     "header B $shb"
for copies in A B AB; do
  for z in header table; do
    cp "$work/ext.pristine" "$spare_file"
    for c in A B; do
      case $copies in *$c*) ;; *) continue ;; esac
      h=0 t=$sta
      [ $c = B ] && h=$shb t=$stb
      if [ $z = header ]; then
        damage "$spare_file" "$h" 4096 zero
      else
        damage "$spare_file" "$t" 16 flip
      fi
    done
    kind=$copies
    [ "$copies" = AB ] && [ $z = header ] && kind=AB0
    check_start "external $copies zero/flip-$z" "$img" "$kind" \
      remap-spare="$spare_file" remap-spare-size=1M
  done
done
cp "$work/ext.pristine" "$spare_file"
truncate -s -4096 "$spare_file"
check_start "external spare file truncated by 4096 bytes" "$img" B \
  remap-spare="$spare_file" remap-spare-size=1M
spare_file=""

echo "$test_name: cases: $cases, started from the good copy and repaired:" \
     "$started_ok, refused correctly (image unchanged): $refused_ok," \
     "failures: $failures"
if [ $failures -gt 0 ]; then
  echo "$test_name: failed cases:$failures_list"
  exit 1
fi
exit 0
