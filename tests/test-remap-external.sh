#!/usr/bin/env bash
# Proves external mode (remap-spare=FILE): the whole disk is exported,
# a failed write is remapped into the spare file (the disk itself never
# gets the data), the remap survives a restart, and a spare file made
# for one disk is refused for a disk of another size, naming both and
# the ways out (this disk's spare file, its old size, the truncate
# filter), and what remap-format=yes would discard.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
spare=$tmp/spare.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
disk_size=$(stat -c %s "$disk")
: >"$list"
ss=4096
bad=20

# 1. Start with a spare file that does not exist yet.
start_server sock "$tmp/log1" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" remap-spare="$spare" badsector-file="$list"
size=$(export_size "$sock")
[ "$size" -eq "$disk_size" ] ||
  fail "external mode exports $size bytes, the disk has $disk_size"
[ -f "$spare" ] || fail "the spare file $spare was not created"

qio "$sock" -c "write -P 0x33 0 1M"
echo "write $bad" >"$list"
qio "$sock" -c "write -P 0x44 $(((bad-1)*ss)) $((3*ss))"
qio "$sock" -c "read -P 0x33 0 $(((bad-1)*ss))" \
            -c "read -P 0x44 $(((bad-1)*ss)) $((3*ss))" \
            -c "read -P 0x33 $(((bad+2)*ss)) $((1024*1024 - (bad+2)*ss))"
grep -q "sector $bad remapped to spare" "$tmp/log1" ||
  fail "the log does not show sector $bad being remapped"
stop_server "$sock"

# 2. Restart without failures: the data comes back from the spare file.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" \
  file "$disk" remap-spare="$spare"
[ "$(export_size "$sock")" -eq "$disk_size" ] || fail "export size changed"
qio "$sock" -c "read -P 0x33 0 $(((bad-1)*ss))" \
            -c "read -P 0x44 $(((bad-1)*ss)) $((3*ss))" \
            -c "read -P 0x33 $(((bad+2)*ss)) $((1024*1024 - (bad+2)*ss))"
stop_server "$sock"

# 3. The disk's sector never got the new data; the spare file did.
bytes_all "$disk" $((bad*ss)) $ss 44 &&
  fail "sector $bad on the disk holds the new data"
bytes_all "$disk" $(((bad-1)*ss)) $ss 44 || fail "sector $((bad-1)) not written"
bytes_all "$disk" $(((bad+1)*ss)) $ss 44 || fail "sector $((bad+1)) not written"
hb=$(header_b "$spare")
[ "$(le_u32 "$spare" $((hb + 152)))" -eq 1 ] || fail "expected 1 table entry"
table_b=$(le_u64 "$spare" $((hb + 112)))
[ "$(le_u64 "$spare" "$table_b")" -eq $bad ] || fail "wrong sector in table"
spare_at=$(( $(le_u64 "$spare" $((hb + 64))) + $(le_u32 "$spare" $((table_b + 8)))*ss ))
bytes_all "$spare" "$spare_at" $ss 44 || fail "the spare does not hold the data"

# 4. The same spare file with a disk of another size is refused.
other=$tmp/other.img
truncate -s 32M "$other"
other_size=$(stat -c %s "$other")
spare_md5=$(file_md5 "$spare")
r=0
try_start "$tmp/log3" --filter="$REMAP_FILTER" \
  file "$other" remap-spare="$spare" || r=$?
cat "$tmp/log3"
[ $r -ne $TRY_STARTED ] || fail "nbdkit started with a spare file of another disk"
[ $r -ne 0 ] || fail "nbdkit exited with status 0"
grep -q "$disk_size" "$tmp/log3" || fail "message does not name $disk_size"
grep -q "$other_size" "$tmp/log3" || fail "message does not name $other_size"
[ "$(file_md5 "$spare")" = "$spare_md5" ] || fail "the spare file was changed"
cmp -s -n "$other_size" "$other" /dev/zero || fail "the other disk was written"
grep -q "the disk was resized" "$tmp/log3" ||
  fail "the message does not say the disk may have been resized"

# 5. This disk grown by 1 MiB: refused, the same way, never told that
#    remap-format=yes is a way out without being told what it discards;
#    with the truncate filter below it, the remapped data is served.
truncate -s +1M "$disk"
r=0
try_start "$tmp/log5" --filter="$REMAP_FILTER" \
  file "$disk" remap-spare="$spare" || r=$?
cat "$tmp/log5"
[ $r -ne $TRY_STARTED ] || fail "nbdkit started with a grown disk"
grep -q "truncate=$disk_size below this filter" "$tmp/log5" ||
  fail "the message does not give the truncate filter's size"
grep -q "remap-format=yes would .* discarding every remap" "$tmp/log5" ||
  fail "the message does not say what remap-format=yes discards"
[ "$(file_md5 "$spare")" = "$spare_md5" ] || fail "the spare file was changed"
start_server sock "$tmp/log5b" --filter="$REMAP_FILTER" --filter=truncate \
  file "$disk" remap-spare="$spare" truncate="$disk_size"
qio "$sock" -c "read -P 0x44 $(((bad-1)*ss)) $((3*ss))"
stop_server "$sock"

echo "$test_name: PASS"
