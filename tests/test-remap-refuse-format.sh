#!/usr/bin/env bash
# Proves that internal mode never formats over data it did not write:
# an image whose last MiBs hold data is refused (the message points to
# remap-format=yes and remap-spare=FILE) and left byte-identical, even
# a single non-zero byte in the last sector is enough, so is data
# anywhere else (a disk is formatted on its own only when its extents
# prove it blank as a whole), and remap-format=yes does start.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo

# Where does the region start on a 64M image?  Ask the filter itself:
# format a blank scratch image and read region offset from header B.
scratch=$tmp/scratch.img
truncate -s 64M "$scratch"
start_server sock "$tmp/log0" --filter="$REMAP_FILTER" file "$scratch"
export_bytes=$(export_size "$sock")
stop_server "$sock"
region=$(le_u64 "$scratch" $(( $(header_b "$scratch") + 48 )))
echo "region starts at $region, export size $export_bytes"
[ "$region" -eq "$export_bytes" ] || fail "region offset != export size"

refused ()                      # refused IMAGE LOG
{
  local before r=0
  before=$(file_md5 "$1")
  try_start "$2" --filter="$REMAP_FILTER" file "$1" || r=$?
  cat "$2"
  [ $r -ne $TRY_STARTED ] || fail "nbdkit formatted over data in $1"
  [ $r -ne 0 ] || fail "nbdkit exited with status 0"
  grep -q "remap-format=yes" "$2" || fail "message does not mention remap-format=yes"
  grep -q "remap-spare" "$2" || fail "message does not mention remap-spare"
  [ "$(file_md5 "$1")" = "$before" ] || fail "$1 was modified"
}

# 1. The last 2 MiB hold data.
disk=$tmp/disk.img
truncate -s 64M "$disk"
dd if=/dev/urandom of="$disk" bs=1M seek=62 count=2 conv=notrunc status=none
refused "$disk" "$tmp/log1"

# 2. Just one non-zero byte, in the very last byte of the image.
disk2=$tmp/disk2.img
truncate -s 64M "$disk2"
poke "$disk2" $((64*1024*1024 - 1)) '\x01'
refused "$disk2" "$tmp/log2"

# 3. One byte at the first byte of the region.
disk3=$tmp/disk3.img
truncate -s 64M "$disk3"
poke "$disk3" "$region" '\x01'
refused "$disk3" "$tmp/log3"

# 4. Data just before the region: the disk is not blank either (a
#    filesystem there would believe it owns the end).
disk4=$tmp/disk4.img
truncate -s 64M "$disk4"
poke "$disk4" $((region - 1)) '\x5a'
refused "$disk4" "$tmp/log4"

# 5. remap-format=yes formats the first image and starts.
start_server sock "$tmp/log5" --filter="$REMAP_FILTER" \
  file "$disk" remap-format=yes
[ "$(export_size "$sock")" -eq "$export_bytes" ] || fail "wrong export size"
qio "$sock" -c "write -P 0x66 0 64k" -c "read -P 0x66 0 64k"
stop_server "$sock"

# 6. After that the metadata is found: a plain start works.
start_server sock "$tmp/log6" --filter="$REMAP_FILTER" file "$disk"
qio "$sock" -c "read -P 0x66 0 64k"
stop_server "$sock"

echo "$test_name: PASS"
