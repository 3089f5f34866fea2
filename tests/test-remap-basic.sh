#!/usr/bin/env bash
# Proves the basic promise of internal mode: when the disk fails a
# write, the client's write still succeeds, the data reads back, it
# survives a restart without the failing disk, and it lives in a spare
# (the original sector on the image never got the new data).  Also
# that internal mode exports less than the whole image.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
: >"$list"
ss=4096
bad=10                          # the sector that will fail writes

# 1. A fresh sparse image: the filter formats its region at the end.
start_server sock "$tmp/log1" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"
size=$(export_size "$sock")
echo "export size $size, image size $(stat -c %s "$disk")"
[ "$size" -lt "$(stat -c %s "$disk")" ] ||
  fail "internal mode export ($size) is not smaller than the image"

qio "$sock" -c "write -P 0x11 0 1M" -c "read -P 0x11 0 1M"

# 2. Sector 10 now fails every write.  Write across it and its
#    neighbours (sectors 8..13): the client must not see an error.
echo "write $bad" >"$list"
qio "$sock" -c "write -P 0x22 $((8*ss)) $((6*ss))"
qio "$sock" -c "read -P 0x11 0 $((8*ss))" \
            -c "read -P 0x22 $((8*ss)) $((6*ss))" \
            -c "read -P 0x11 $((14*ss)) $((1024*1024 - 14*ss))"
grep -q "sector $bad remapped to spare" "$tmp/log1" ||
  fail "the log does not show sector $bad being remapped"
stop_server "$sock"

# 3. Restart without the bad-sector filter: the data is still right.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
[ "$(export_size "$sock")" -eq "$size" ] || fail "export size changed"
qio "$sock" -c "read -P 0x11 0 $((8*ss))" \
            -c "read -P 0x22 $((8*ss)) $((6*ss))" \
            -c "read -P 0x11 $((14*ss)) $((1024*1024 - 14*ss))"
stop_server "$sock"

# 4. On the raw image, sector 10 does NOT hold the new data (the write
#    never reached it), while its neighbours were written in place.
if bytes_all "$disk" $((bad*ss)) $ss 22; then
  fail "sector $bad on the image holds the new data: it was not remapped"
fi
bytes_all "$disk" $((bad*ss)) $ss 11 ||
  fail "sector $bad on the image lost its old data"
for s in 8 9 11 12 13; do
  bytes_all "$disk" $((s*ss)) $ss 22 || fail "sector $s not written in place"
done

# 5. The metadata (header B, last 4 KiB of the image) lists sector 10,
#    and its spare holds the new data.
hb=$(header_b "$disk")
count=$(le_u32 "$disk" $((hb + 152)))
[ "$count" -eq 1 ] || fail "table has $count entries, expected 1"
spare_off=$(le_u64 "$disk" $((hb + 64)))
table_b=$(le_u64 "$disk" $((hb + 112)))
esector=$(le_u64 "$disk" "$table_b")
espare=$(le_u32 "$disk" $((table_b + 8)))
[ "$esector" -eq $bad ] || fail "table entry is for sector $esector"
echo "sector $esector -> spare $espare at $((spare_off + espare*ss))"
[ $((spare_off + espare*ss)) -ge "$size" ] ||
  fail "the spare lies inside the export"
bytes_all "$disk" $((spare_off + espare*ss)) $ss 22 ||
  fail "spare $espare does not hold the new data"

echo "$test_name: PASS"
