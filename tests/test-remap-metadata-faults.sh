#!/usr/bin/env bash
# Proves what happens when the sectors under the metadata go bad (in
# internal mode the copies sit on the same failing disk as the data):
# a copy that cannot be written moves to spare sectors, both copies
# stay current, the move survives a restart and remapctl sees it; when
# copy A cannot be written anywhere, copy B (the only valid one) is not
# written over in place: the write that needed a remap and the flushes
# after it fail with EIO, copy B's header is unchanged, the log says
# why once, status shows which copy holds the table, and what was
# stored before still reads.  A copy that needs a repair at startup
# where it cannot be written anywhere: refused (also when only the
# valid copy's place takes writes, which stays unchanged), saying that
# -r serves it, and -r does.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdsh

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
: >"$list"

serve ()
{
  start_server sock "$1" -v --filter="$REMAP_FILTER" \
    --filter="$BADSECTOR_FILTER" file "$disk" badsector-file="$list" \
    remap-control="$ctl" remap-spare-size=4M
}

serve "$tmp/log"
qio "$sock" -c "write -P 0x11 0 1M"
header_a=$(( $(ctl_get metadata.copies.0.offset) / ss ))
header_b=$(( $(ctl_get metadata.copies.1.offset) / ss ))
[ "$(ctl_get metadata.copies.0.moved)" = False ] ||
  fail "copy A starts out moved"

# 1. Header A's sector stops taking writes; sector 5 fails too, so
#    remapping it needs a metadata write.  Copy A moves; the write
#    succeeds; both copies are current.
printf 'write %d\nwrite 5\n' "$header_a" >"$list"
qio "$sock" -c "write -P 0x22 $((5*ss)) $ss" -c "read -P 0x22 $((5*ss)) $ss"
[ "$(ctl_get metadata.copies.0.moved)" = True ] || fail "copy A did not move"
[ "$(ctl_get metadata.copies_valid)" = True ] ||
  fail "redundancy reduced although copy A could move"
moved_to=$(ctl_get metadata.copies.0.offset)
[ $((moved_to / ss)) -ne "$header_a" ] || fail "copy A is still at home"
grep -q "metadata copy A could not be written .* moved it to spare sectors" \
  "$tmp/log" || fail "the move is not logged"
# The slot's spares are no longer in the pool.
[ "$(ctl_get spares.used)" -gt 1 ] || fail "the slot's spares are still free"
stop_server "$sock"

# 2. A fresh start finds copy A where it went; so does remapctl.
out=$(timeout 30 "$REMAPCTL" --disk "$disk" check) ||
  fail "remapctl check after the move: $out"
echo "$out" | grep -q "copy A (header at offset $moved_to, moved to spare sectors): valid" ||
  fail "remapctl does not see the moved copy: $out"
serve "$tmp/log2"
[ "$(ctl_get metadata.copies.0.moved)" = True ] || fail "the move was lost"
[ "$(ctl_get metadata.copies.0.offset)" -eq "$moved_to" ] ||
  fail "copy A came back somewhere else"
qio "$sock" -c "read -P 0x22 $((5*ss)) $ss" -c "read -P 0x11 0 $((5*ss))"

# 3. Every place copy A can live fails writes: its home and every
#    relocation slot (at the top of the pool, see filter/format.h).
#    Header B still takes writes, but copy B is the only valid copy
#    then: writing it over in place would leave no copy if the server
#    died in that write, so the table write fails instead.
total=$(ctl_get spares.total)
spare0=$(( $(ctl_get geometry.spare_offset) / ss ))
table=$(( ((2*total + 1024) * 16 + ss - 1) / ss ))
run=$((1 + table))
{
  printf 'write %d\nwrite 6\n' "$header_a"
  for k in 0 1 2 3; do
    echo "write $((spare0 + total - (k+1)*run))"
  done
} >"$list"
header_b_before=$(dd if="$disk" bs=$ss skip="$header_b" count=1 2>/dev/null |
                    md5sum)
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0x33 $((6*ss)) $ss" 2>&1) || true
echo "$out" | grep -q "Input/output error" ||
  fail "a write whose remap cannot be made durable succeeded: $out"
for try in 1 2; do
  out=$(timeout 30 nbdsh -u "$(uri "$sock")" -c 'h.flush ()' 2>&1) &&
    fail "flush succeeded with no durable metadata copy"
  echo "$out" | grep -q "Input/output error" || fail "flush: $out"
done
[ "$(dd if="$disk" bs=$ss skip="$header_b" count=1 2>/dev/null |
     md5sum)" = "$header_b_before" ] ||
  fail "copy B, the only valid copy, was written over in place"
grep -q "writing the remap table failed: metadata copy A could not be written.*copy B, the only valid copy, is never written over in place" \
  "$tmp/log2" || fail "the log does not say why"
[ "$(grep -c "writing the remap table failed:" "$tmp/log2")" -eq 1 ] ||
  fail "the failure is logged more than once"
[ "$(ctl_get metadata.copies.1.valid)" = True ] &&
  [ "$(ctl_get metadata.copies.0.valid)" = False ] ||
  fail "status does not say that copy B holds the table"
[ "$(ctl_get metadata.sync_failures)" -ge 3 ] &&
  [ "$(ctl_get metadata.last_sync_failed)" = True ] ||
  fail "status does not say that the table writes fail"
qio "$sock" -c "read -P 0x22 $((5*ss)) $ss" -c "read -P 0x11 0 $((5*ss))"

# 4. The disk recovers: the next flush makes everything durable, and
#    a restart still finds it all.
: >"$list"
qio "$sock" -c "flush"
grep -q "the remap table is written again" "$tmp/log2" ||
  fail "the recovery is not logged"
[ "$(ctl_get metadata.last_sync_failed)" = False ] ||
  fail "status still says that the table writes fail"
stop_server "$sock"
serve "$tmp/log3"
qio "$sock" -c "read -P 0x22 $((5*ss)) $ss" -c "read -P 0x11 0 $((5*ss))"
[ "$(ctl_get metadata.copies_valid)" = True ] || fail "copies not valid"
stop_server "$sock"
[ "$STOP_RC" -eq 0 ] || fail "nbdkit exited with status $STOP_RC"

# 5. Copy A damaged while none of its places takes writes (header B
#    still does): the repair at startup could only write copy B, the
#    only valid copy, over in place.  Refused instead, naming -r, and
#    header B is unchanged.  (Copy A is given back its bytes after.)
a_damage=$((moved_to + 200))
saved=$(od -An -tx1 -j "$a_damage" -N 4 "$disk" | tr -d ' \n' |
          sed 's/../\\x&/g')
poke "$disk" "$a_damage" '\xde\xad\xbe\xef'
{
  echo "write $header_a"
  for k in 0 1 2 3; do
    echo "write $((spare0 + total - (k+1)*run))"
  done
} >"$list"
header_b_before=$(dd if="$disk" bs=$ss skip="$header_b" count=1 2>/dev/null |
                    md5sum)
r=0
try_start "$tmp/log4b" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" || r=$?
[ $r -ne $TRY_STARTED ] ||
  fail "started writable although the repair could only write over the only valid copy"
grep -q "could not be repaired.*-r to serve the disk read-only" \
  "$tmp/log4b" || fail "the refusal does not name -r: $(cat "$tmp/log4b")"
[ "$(dd if="$disk" bs=$ss skip="$header_b" count=1 2>/dev/null |
     md5sum)" = "$header_b_before" ] ||
  fail "the repair wrote copy B, the only valid copy, over in place"
poke "$disk" "$a_damage" "$saved"

# 6. Copy B damaged while the whole region stops taking writes: the
#    repair cannot be written anywhere.  The writable server refuses,
#    naming -r; a read-only server serves the data from copy A.
poke "$disk" $((header_b * ss + 200)) '\xde\xad\xbe\xef'
echo "write $header_a-$(( $(stat -c %s "$disk") / ss - 1 ))" >"$list"
before=$(file_md5 "$disk")
r=0
try_start "$tmp/log5" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" || r=$?
cat "$tmp/log5"
[ $r -ne $TRY_STARTED ] || fail "started writable with no writable copy"
grep -q "could not be repaired.*-r to serve the disk read-only" \
  "$tmp/log5" || fail "the refusal does not name -r"
start_server sock "$tmp/log5r" -r --filter="$REMAP_FILTER" \
  --filter="$BADSECTOR_FILTER" file "$disk" badsector-file="$list"
qio "$sock" -r -c "read -P 0x22 $((5*ss)) $ss" -c "read -P 0x11 0 $((5*ss))"
stop_server "$sock"
[ "$(file_md5 "$disk")" = "$before" ] || fail "the disk was written"
