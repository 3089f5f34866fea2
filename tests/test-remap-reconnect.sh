#!/usr/bin/env bash
# Proves that a server whose clients come and go keeps its fast path:
# nbdkit starts worker threads for each connection and ends them when
# it closes, and each thread that counts a request takes a counter
# slot (filter/counters.c).  Twelve connections, one pair after the
# other, run more worker threads in all than there are slots; every
# one must still find a free slot (status: counter_slots), the
# counters must add up to what the clients wrote, and the server must
# shut down cleanly with the slots' thread-exit hooks registered.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdcopy python3

disk=$tmp/disk.img
ctl=$tmp/ctl.sock
truncate -s 64M "$disk"

start_server sock "$tmp/log" -v --filter="$REMAP_FILTER" \
  file "$disk" remap-control="$ctl"
size=$(export_size "$sock")
src=$tmp/src.img
dd if=/dev/urandom of="$src" bs=1M count=$((size / 1048576)) status=none
truncate -s "$size" "$src"
total=$(ctl_get counter_slots.total)
written0=$(ctl_get counters.bytes_written)

# 1. Six copies of two connections each, one after the other: twelve
#    connections of 16 worker threads, with 64 requests in flight each.
runs=6
for i in $(seq $runs); do
  timeout 60 nbdcopy --connections=2 --requests=64 "$src" "$(uri "$sock")" ||
    fail "nbdcopy $i failed"
done

# 2. Once the connections' threads have ended, their slots are free
#    again; no thread ever had to go without one.
limit=$(( $(now_ms) + $(scaled_ms 10000) ))
until [ "$(ctl_get counter_slots.owned)" -lt 16 ]; do
  [ "$(now_ms)" -lt "$limit" ] ||
    fail "slots still owned after the clients left: $(ctlcmd status)"
  sleep 0.1
done
without=$(ctl_get counter_slots.threads_without)
[ "$without" -eq 0 ] ||
  fail "$without threads found no free counter slot (of $total)"

# 3. Exact counts, through every slot hand-over.
written=$(ctl_get counters.bytes_written)
[ "$written" -eq $((written0 + runs * size)) ] ||
  fail "bytes_written is $written, expected $((written0 + runs * size))"

# 4. A clean shutdown (stop_server checks the exit status).
stop_server "$sock"
