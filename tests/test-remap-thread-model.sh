#!/usr/bin/env bash
# Proves that the filter keeps the plugin's thread model: under a
# plugin that serializes all requests (the test source declares it with
# badsector-serialize=yes and logs any call that overlaps another), two
# clients write and read across failing sectors while the control
# socket remaps sectors and forces syncs, so that the sync thread, the
# control thread and spare writes all call the plugin while requests
# run.  Not one call may overlap, and every client sees its own data.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io python3

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
# Delays widen every call, so that an overlap, if allowed, happens.
printf 'delay-write 3\ndelay-read 1\n' >"$list"

start_server sock "$tmp/log" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" badsector-serialize=yes \
  remap-control="$ctl"
grep -q "calls to it are serialized" "$tmp/log" ||
  fail "the filter did not see the serializing thread model"

# Sectors fail writes in both clients' areas: client A writes sectors
# 0-63, client B 256-319; each round remaps new ones.
{
  printf 'delay-write 3\ndelay-read 1\n'
  for s in 3 17 40 260 290 311; do echo "write $s"; done
} >"$list"

client ()
{
  local first=$1 pat=$2 round
  for round in 1 2 3 4; do
    timeout 60 qemu-io -f raw "$(uri "$sock")" \
      -c "write -P $pat $((first*ss)) $((64*ss))" \
      -c "read -P $pat $((first*ss)) $((64*ss))" >/dev/null ||
      { echo "client at $first failed in round $round" >&2; return 1; }
  done
}
client 0 0x11 & pid_a=$!; track_pid $pid_a
client 256 0x22 & pid_b=$!; track_pid $pid_b

# Meanwhile the control socket remaps idle sectors and forces syncs.
for s in 100 101 102 103 104 105 106 107; do
  ctlcmd "remap $s" >/dev/null
  ctlcmd sync >/dev/null
done

wait $pid_a || fail "client A failed"
wait $pid_b || fail "client B failed"
[ "$(ctl_get counters.remaps)" -ge 14 ] ||
  fail "expected at least 14 remaps, got $(ctl_get counters.remaps)"
stop_server "$sock"

n=$(grep -c "badsector: overlapping calls" "$tmp/log" || true)
[ "$n" -eq 0 ] || {
  grep "badsector: overlapping calls" "$tmp/log" | tail -n 3
  fail "$n calls overlapped under a plugin that serializes all requests"
}
