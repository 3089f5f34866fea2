#!/usr/bin/env bash
# Proves the two metadata copies protect each other: with copy A's
# header and table corrupted the server still starts from copy B,
# keeps every remap (the data reads back), says it is repairing, and
# rewrites copy A; likewise from copy A when copy B's header is bad;
# with both copies corrupted it refuses to start
# ("damaged") and does not touch the image.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
: >"$list"
ss=4096

# 1. Format, write data, and remap sector 3 so the table has an entry.
start_server sock "$tmp/log1" \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"
qio "$sock" -c "write -P 0x77 0 256k"
echo "write 3" >"$list"
qio "$sock" -c "write -P 0x88 $((3*ss)) $ss"
stop_server "$sock"

verify_data ()
{
  qio "$1" -c "read -P 0x77 0 $((3*ss))" -c "read -P 0x88 $((3*ss)) $ss" \
           -c "read -P 0x77 $((4*ss)) $((256*1024 - 4*ss))"
}

# Find both copies: header B is the last 4 KiB; copy A's header is at
# the region offset (u64 at byte 48 of the header), its table right
# after the header slot (u64 at byte 104).
hb=$(header_b "$disk")
ha=$(le_u64 "$disk" $((hb + 48)))
ta=$(le_u64 "$disk" $((hb + 104)))
tb=$(le_u64 "$disk" $((hb + 112)))
echo "header A $ha, table A $ta, table B $tb, header B $hb"
[ "$(le_u64 "$disk" $((hb + 88)))" -eq "$ha" ] || fail "header A offset mismatch"
[ "$(le_u32 "$disk" $((hb + 152)))" -eq 1 ] || fail "expected 1 table entry"
[ "$(dd if="$disk" bs=1 skip="$ha" count=12 status=none)" = "nbdkit-remap" ] ||
  fail "no magic at header A"

# 2. Corrupt copy A: a counter in its header and its table entry.
poke "$disk" $((ha + 200)) '\xde\xad\xbe\xef'
poke "$disk" "$ta" '\x55\x55\x55\x55'
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
verify_data "$sock"
stop_server "$sock"
cat "$tmp/log2"
grep -qi "repair" "$tmp/log2" || fail "the log does not mention repairing"
[ "$(le_u64 "$disk" "$ta")" -eq 3 ] || fail "table A was not rewritten"

# 3. The repaired image starts without complaint.
start_server sock "$tmp/log3" --filter="$REMAP_FILTER" file "$disk"
verify_data "$sock"
stop_server "$sock"
if grep -qi "repair" "$tmp/log3"; then
  cat "$tmp/log3"; fail "still repairing after the repair"
fi

# 4. Corrupt copy B's header geometry (copy A intact): the server
#    finds copy A on its own, starts, and rewrites header B.
export_b=$(le_u64 "$disk" $((hb + 40)))
poke "$disk" $((hb + 40)) '\x01'
start_server sock "$tmp/log3b" --filter="$REMAP_FILTER" file "$disk"
verify_data "$sock"
stop_server "$sock"
cat "$tmp/log3b"
grep -qi "repair" "$tmp/log3b" || fail "the log does not mention repairing B"
[ "$(le_u64 "$disk" $((hb + 40)))" -eq "$export_b" ] ||
  fail "header B was not rewritten"

# 5. Corrupt both copies' tables (geometry intact): refused, untouched.
poke "$disk" "$ta" '\x55'
poke "$disk" "$tb" '\x55'
before=$(file_md5 "$disk")
r=0
try_start "$tmp/log4" --filter="$REMAP_FILTER" file "$disk" || r=$?
cat "$tmp/log4"
[ $r -ne $TRY_STARTED ] || fail "nbdkit started with both copies corrupt"
[ $r -ne 0 ] || fail "nbdkit exited with status 0"
grep -q "damaged" "$tmp/log4" || fail "the message does not say damaged"
[ "$(file_md5 "$disk")" = "$before" ] || fail "the image was modified"

# 6. Corrupt both headers' geometry (magic intact): refused, untouched.
poke "$disk" "$ta" '\x03'          # table A back to sector 3
poke "$disk" "$tb" '\x03'
poke "$disk" $((ha + 40)) '\x01'
poke "$disk" $((hb + 40)) '\x01'
before=$(file_md5 "$disk")
r=0
try_start "$tmp/log5" --filter="$REMAP_FILTER" file "$disk" || r=$?
cat "$tmp/log5"
[ $r -ne $TRY_STARTED ] || fail "nbdkit started with both headers corrupt"
[ $r -ne 0 ] || fail "nbdkit exited with status 0"
grep -q "damaged" "$tmp/log5" || fail "the message does not say damaged"
[ "$(file_md5 "$disk")" = "$before" ] || fail "the image was modified"

echo "$test_name: PASS"
