#!/usr/bin/env bash
# Proves remapping is safe under concurrency: two connections write at
# once (many requests in flight on each) while several sectors fail,
# one of them written by both connections (each owns half of it).
# Every write succeeds, all data verifies (also after a restart), and
# exactly one spare is used per distinct bad sector - the shared
# sector is not remapped twice.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdsh nbdinfo

disk=$tmp/disk.img
list=$tmp/bad.txt
truncate -s 64M "$disk"
: >"$list"
ss=4096

start_server sock "$tmp/log1" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list"

# Sectors 0..63 and the first half of 64 belong to connection A,
# the second half of 64 and 65..127 to connection B.  A small write
# delay keeps the requests of both connections in flight together.
bad_sectors="3 10 40 64 70 100 120"
{
  for b in $bad_sectors; do echo "write $b"; done
  echo "delay-write 50"
} >"$list"

cat >"$tmp/writers.py" <<'EOF'
import os, sys, nbd
sock = os.environ["SOCK"]
ss = 4096
half = 64 * ss + ss // 2
end = 128 * ss
A, B = b"\xa1", b"\xb2"

conns = [nbd.NBD(), nbd.NBD()]
for h in conns:
    h.connect_unix(sock)

def chunks(start, stop, size):
    while start < stop:
        n = min(size, stop - start)
        yield start, n
        start += n

# The two halves of the shared sector go first, one on each
# connection, so they race; then everything else in 16 KiB requests.
jobs = [(conns[0], 64 * ss, ss // 2, A), (conns[1], half, ss // 2, B)]
jobs += [(conns[0], o, n, A) for o, n in chunks(0, 64 * ss, 16384)]
jobs += [(conns[1], o, n, B) for o, n in chunks(65 * ss, end, 16384)]
cookies = []
for h, off, n, pat in jobs:
    cookies.append((h, h.aio_pwrite(nbd.Buffer.from_bytearray(pat * n), off),
                    off, n))

errors = 0
pending = list(cookies)
while pending:
    for h in conns:
        if h.aio_in_flight() > 0:
            h.poll(10)
    still = []
    for h, c, off, n in pending:
        try:
            if h.aio_command_completed(c):
                continue
        except nbd.Error as e:
            print("write at %d (+%d) failed: %s" % (off, n, e))
            errors += 1
            continue
        still.append((h, c, off, n))
    pending = still
if errors:
    sys.exit("%d writes failed" % errors)

expect = A * half + B * (end - half)
for i, h in enumerate(conns):
    got = h.pread(end, 0)
    if got != expect:
        bad = next(j for j in range(end) if got[j] != expect[j])
        sys.exit("connection %d reads wrong data at byte %d (sector %d)"
                 % (i, bad, bad // ss))
for h in conns:
    h.shutdown()
print("%d writes on 2 connections succeeded and verified" % len(jobs))
EOF

start=$(now_ms)
SOCK=$sock timeout 60 nbdsh -c "exec(open('$tmp/writers.py').read())" ||
  fail "the concurrent writers failed"
echo "writers took $(( $(now_ms) - start )) ms"
: >"$list"
stop_server "$sock"

# (Did both connections hit the shared sector?  Informational.)
echo "requests that failed on shared sector 64:" \
  $(grep "injecting write error at sector 64 " "$tmp/log1" |
      grep -o "request offset [0-9]*" | sort -u | awk '{print $3}')

# One "remapped to spare" line per distinct bad sector, distinct spares.
grep "remapped to spare" "$tmp/log1" | sed 's/.*remap: //'
remapped=$(grep -o "sector [0-9]* remapped" "$tmp/log1" | awk '{print $2}' |
             sort -n | tr '\n' ' ')
[ "$remapped" = "$bad_sectors " ] ||
  fail "remapped sectors '$remapped', expected '$bad_sectors '"
spares=$(grep -o "remapped to spare [0-9]*" "$tmp/log1" | awk '{print $4}' |
           sort -u | wc -l)
nbad=$(echo $bad_sectors | wc -w)
[ "$spares" -eq "$nbad" ] || fail "$spares spares used for $nbad bad sectors"
# The durable table agrees.
count=$(le_u32 "$disk" $(( $(header_b "$disk") + 152 )))
[ "$count" -eq "$nbad" ] || fail "the table has $count entries, expected $nbad"

# Everything reads back after a restart without failures.
start_server sock "$tmp/log2" --filter="$REMAP_FILTER" file "$disk"
SOCK=$sock timeout 30 nbdsh -c '
import os
h.connect_unix(os.environ["SOCK"])
ss = 4096
half = 64 * ss + ss // 2
got = h.pread(128 * ss, 0)
assert got == b"\xa1" * half + b"\xb2" * (128 * ss - half), "data differs"
' || fail "data differs after restart"
stop_server "$sock"

echo "$test_name: PASS"
