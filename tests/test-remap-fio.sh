#!/usr/bin/env bash
# Proves data integrity under a real I/O load: fio (nbd engine) writes
# random blocks from two jobs with several requests in flight while a
# few sectors fail, then reads everything back checking crc32c (three
# passes, so later ones write to sectors already on spares).  Every
# write must succeed and every block verify.
source "$(dirname "$0")/functions.sh"
set -e
requires fio nbdinfo
fio --enghelp=nbd >/dev/null 2>&1 || skip "fio has no nbd engine"

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
# Failing sectors in both jobs' areas (job 0: 0-16M, job 1: 16M-32M).
printf 'write 5\nwrite 700-702\nwrite 4100\nwrite 6000\nwrite 8191\n' >"$list"

start_server sock "$tmp/log" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"

cat >"$tmp/job.fio" <<EOF
[global]
ioengine=nbd
uri=$(uri "$sock")
rw=randwrite
bs=16k
size=16M
iodepth=8
verify=crc32c
verify_fatal=1
do_verify=1
randrepeat=1
loops=3

[job0]
offset=0

[job1]
offset=16M
EOF

r=0
# fio leaves verify state files in its working directory.
(cd "$tmp" && timeout 60 fio --output="$tmp/fio.out" "$tmp/job.fio") || r=$?
cat "$tmp/fio.out"
[ $r -eq 0 ] || fail "fio failed (status $r)"
grep -q "err= 0" "$tmp/fio.out" || fail "fio reported errors"
if grep -qi "verify: bad\|crc32c: verify failed" "$tmp/fio.out"; then
  fail "fio verification failed"
fi
stop_server "$sock"

remaps=$(grep -o "sector [0-9]* remapped" "$tmp/log" | awk '{print $2}' |
           sort -n | tr '\n' ' ')
echo "remapped sectors: $remaps"
[ "$remaps" = "5 700 701 702 4100 6000 8191 " ] ||
  fail "expected sectors 5 700 701 702 4100 6000 8191 to be remapped"

echo "$test_name: PASS"
