#!/usr/bin/env bash
# Internal mode formats on its own only a disk whose extents prove it
# blank as a whole.  A disk with a filesystem is refused, the message
# names the filesystem and the ways out, and the image is left
# byte-identical; external mode then serves it untouched.  A disk the
# plugin reports as data all along (a dd'ed image of zeros) cannot be
# proven blank and needs remap-format=yes.  An unreadable sector
# anywhere on a blank disk does not stop the first start.
source "$(dirname "$0")/functions.sh"
set -e
requires mke2fs e2fsck nbdinfo

# 1. mke2fs on a 256 MiB image: refused, naming ext4; nothing written.
disk=$tmp/ext4.img
truncate -s 256M "$disk"
mke2fs -q -F -t ext4 "$disk"
before=$(file_md5 "$disk")
r=0
try_start "$tmp/log1" --filter="$REMAP_FILTER" file "$disk" || r=$?
cat "$tmp/log1"
[ $r -ne $TRY_STARTED ] || fail "internal mode started over an ext4 filesystem"
grep -q "ext4 filesystem" "$tmp/log1" || fail "the message does not name ext4"
grep -q "remap-spare=FILE" "$tmp/log1" || fail "no mention of external mode"
grep -q "remap-format=yes" "$tmp/log1" || fail "no mention of remap-format=yes"
[ "$(file_md5 "$disk")" = "$before" ] || fail "the ext4 image was modified"

# 2. External mode serves the whole filesystem, and e2fsck finds it
#    intact through the export.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk" \
  remap-spare="$tmp/spare"
[ "$(export_size "$sock")" -eq $((256*1024*1024)) ] ||
  fail "external mode does not export the whole disk"
timeout 60 nbdcopy "$(uri "$sock")" "$tmp/copy.img"
stop_server "$sock"
e2fsck -fn "$tmp/copy.img" >"$tmp/fsck" 2>&1 || {
  cat "$tmp/fsck"; fail "e2fsck found the filesystem damaged"; }
[ "$(file_md5 "$disk")" = "$before" ] || fail "external mode changed the disk"

# 3. Zeros written out (no holes): not provably blank, refused; with
#    remap-format=yes it starts.
zeros=$tmp/zeros.img
dd if=/dev/zero of="$zeros" bs=1M count=64 status=none
r=0
try_start "$tmp/log3" --filter="$REMAP_FILTER" file "$zeros" || r=$?
cat "$tmp/log3"
[ $r -ne $TRY_STARTED ] && [ $r -ne 0 ] ||
  fail "a disk the extents call data was formatted without remap-format=yes"
grep -q "remap-format=yes" "$tmp/log3" || fail "no mention of remap-format=yes"
start_server sock "$tmp/log3b" --filter="$REMAP_FILTER" file "$zeros" \
  remap-format=yes
stop_server "$sock"

# 4. A blank (sparse) disk with one sector that fails every read, at
#    the start, in the middle, under the region and at the very end:
#    the first start formats it and serves.
for bad in 0 8000 16200 16300 16383; do
  blank=$tmp/blank$bad.img
  truncate -s 64M "$blank"
  echo "read $bad" >"$tmp/bad$bad"
  start_server sock "$tmp/log4-$bad" \
    --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
    file "$blank" badsector-file="$tmp/bad$bad"
  qio "$sock" -c "write -P 0x5c 4096 4096" -c "read -P 0x5c 4096 4096"
  stop_server "$sock"
  # And it loads again, unreadable sector and all.
  start_server sock "$tmp/log4b-$bad" \
    --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
    file "$blank" badsector-file="$tmp/bad$bad"
  qio "$sock" -c "read -P 0x5c 4096 4096"
  stop_server "$sock"
done

# 5. A disk with data and an unreadable sector in the last 64 MiB is
#    refused for what it holds, not for the read error.
data=$tmp/data.img
truncate -s 64M "$data"
poke "$data" 100 'hello'
echo "read 16000" >"$tmp/bad5"
r=0
try_start "$tmp/log5" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$data" badsector-file="$tmp/bad5" || r=$?
cat "$tmp/log5"
[ $r -ne $TRY_STARTED ] || fail "a disk with data was formatted"
grep -q "Input/output error" "$tmp/log5" && fail "refused for a read error"
grep -q "remap-spare=FILE" "$tmp/log5" || fail "no ways out in the message"

# 6. The same disk with its last MiB unreadable (where header B would
#    be, and header A of the default layout, 708 KiB from the end): no
#    header reads, which says nothing about a table.  Refused for what
#    it holds, with the way out for a disk with data, not as a damaged
#    table to discard with remap-format=yes; nothing written.
before=$(file_md5 "$data")
echo "read 16128-16383" >"$tmp/bad6"
r=0
try_start "$tmp/log6" --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$data" badsector-file="$tmp/bad6" || r=$?
cat "$tmp/log6"
[ $r -ne $TRY_STARTED ] || fail "a disk with data was formatted"
grep -q "no remap metadata header of the disk can be read" "$tmp/log6" ||
  fail "the refusal does not say that no header could be read"
grep -q "remap-spare=FILE" "$tmp/log6" ||
  fail "the refusal does not point a disk with data to external mode"
[ "$(file_md5 "$data")" = "$before" ] || fail "the disk was written"

echo "$test_name: PASS"
