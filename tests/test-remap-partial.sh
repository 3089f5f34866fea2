#!/usr/bin/env bash
# Proves read-modify-write when a write smaller than the remap sector
# fails: with remap-sector-size=4096, a 512-byte write into a failing
# sector succeeds, and the spare gets the whole sector - the new 512
# bytes plus the old contents around them - so nothing else in the
# sector changes.  Later partial writes go straight to the spare, and
# it all survives a restart.  A partial write to a sector whose old
# contents cannot be read fails rather than inventing the rest.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
: >"$list"
ss=4096
s=7                               # failing sector
base=$((s*ss))

start_server sock "$tmp/log1" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-sector-size=4096
qio "$sock" -c "write -P 0xaa $(((s-1)*ss)) $((3*ss))"

# 1. Sector 7 fails writes; write 512 bytes in its middle.
echo "write $s" >"$list"
qio "$sock" -c "write -P 0xbb $((base + 1536)) 512"
grep -q "sector $s remapped to spare" "$tmp/log1" ||
  fail "sector $s was not remapped"
# (The client really sent a 512-byte request.)
grep -q "remap: pwrite count=512 offset=$((base + 1536)) " "$tmp/log1" ||
  fail "no 512-byte pwrite reached the filter"
check_first ()
{
  qio "$1" -c "read -P 0xaa $(((s-1)*ss)) $((ss + 1536))" \
           -c "read -P 0xbb $((base + 1536)) 512" \
           -c "read -P 0xaa $((base + 2048)) $((ss - 2048 + ss))"
}
check_first "$sock"

# 2. A second partial write to the now remapped sector.
qio "$sock" -c "write -P 0xcc $base 512"
check_second ()
{
  qio "$1" -c "read -P 0xaa $(((s-1)*ss)) $ss" \
           -c "read -P 0xcc $base 512" \
           -c "read -P 0xaa $((base + 512)) 1024" \
           -c "read -P 0xbb $((base + 1536)) 512" \
           -c "read -P 0xaa $((base + 2048)) $((ss - 2048 + ss))"
}
check_second "$sock"
[ "$(grep -c "remapped to spare" "$tmp/log1")" -eq 1 ] ||
  fail "the sector was remapped more than once"

# 3. A sector that fails both reads and writes: a partial write cannot
#    be completed (its old bytes are unreadable) and must fail...
echo "rw 20" >"$list"
r=0
out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" \
        -c "write -P 0xdd $((20*ss + 100)) 100" 2>&1) || r=$?
echo "$out"
if [ $r -eq 0 ] && ! echo "$out" | grep -qi "fail\|error"; then
  fail "a partial write to an unreadable, unwritable sector succeeded"
fi
#    ... but a whole-sector write to it succeeds, through a spare.
qio "$sock" -c "write -P 0xee $((20*ss)) $ss" -c "read -P 0xee $((20*ss)) $ss"
stop_server "$sock"

# 4. All of it survives a restart without the failures.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
check_second "$sock"
qio "$sock" -c "read -P 0xee $((20*ss)) $ss"
stop_server "$sock"
# The image's own sector 7 never saw the new bytes.
bytes_all "$disk" "$base" $ss aa || fail "sector $s on the image was changed"

echo "$test_name: PASS"
