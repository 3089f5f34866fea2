#!/usr/bin/env bash
# Proves the server shuts down promptly and safely in the middle of a
# "remap storm": with thousands of failing sectors and several
# writers busy remapping, SIGTERM makes nbdkit exit within 1 second,
# and the image then starts again cleanly (valid metadata, every
# remapped sector readable).  Then the same with a slow plugin
# (delay-write 2000): exit must take no longer than the plugin call
# already in flight (allowed: 3 s, the 2 s of the call and 1 s).
# The seconds that nbdkit's own speed decides are scaled (scaled_ms:
# 2 under the sanitizers, 5 under valgrind); the plugin's 2 s are not.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo

ss=4096
list=$tmp/bad.txt
failures=0

# writers SOCK N: N qemu-io processes, each writing its own 2 MiB in
# 64 KiB requests, three passes.  Their errors are expected once the
# server goes away; their PIDs are in $writer_pids.
writers ()
{
  local sock=$1 n=$2 k o pass cmds
  writer_pids=""
  for ((k = 0; k < n; k++)); do
    cmds=()
    for pass in 1 2 3; do
      for ((o = k*2*1024*1024; o < (k+1)*2*1024*1024; o += 65536)); do
        cmds+=(-c "write -P $((k + pass)) $o 64k")
      done
    done
    timeout 60 qemu-io -f raw "$(uri "$sock")" "${cmds[@]}" \
      >"$tmp/writer$k.out" 2>&1 &
    track_pid $!
    writer_pids="$writer_pids $!"
  done
}

running_writers ()
{
  local p n=0
  for p in $writer_pids; do kill -0 "$p" 2>/dev/null && n=$((n+1)); done
  echo $n
}

wait_writers ()
{
  local p
  for p in $writer_pids; do wait "$p" 2>/dev/null || true; done
}

# restart_check DISK LOG: the image starts again with valid metadata,
# and the whole disk (every remapped sector included) reads.
restart_check ()
{
  local disk=$1 log=$2 size
  start_server sock2 "$log" -v --filter="$REMAP_FILTER" file "$disk"
  grep -o "remap: loaded the disk:.*" "$log" || fail "metadata not loaded"
  if grep -q "repairing" "$log"; then
    echo "note: one metadata copy needed repair after the SIGTERM:"
    grep "repairing" "$log"
  fi
  size=$(export_size "$sock2")
  qio "$sock2" -c "read 0 $size"
  stop_server "$sock2"
}

# ---- 1. The storm. ----
disk=$tmp/disk.img
truncate -s 64M "$disk"
echo "write 256-3071" >"$list"        # 2816 sectors, in writers 0..5
start_server sock "$tmp/log1" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-spare-size=20%
writers "$sock" 8

# Wait (at most 15 s) until the storm is well under way.
deadline=$(( $(now_ms) + 15000 ))
while [ "$(grep -c "remapped to spare" "$tmp/log1")" -lt 200 ]; do
  [ "$(now_ms)" -lt "$deadline" ] || fail "no remap storm after 15 s"
  sleep 0.02
done
busy=$(running_writers)
echo "storm: $(grep -c "remapped to spare" "$tmp/log1") remaps so far, $busy writers busy"
[ "$busy" -gt 0 ] || fail "the writers finished before SIGTERM"
stop_server "$sock"
echo "storm: $(grep -c "remapped to spare" "$tmp/log1") remaps in all (of 2816 bad sectors)"
limit=$(scaled_ms 1000)
if [ "$STOP_MS" -gt "$limit" ]; then
  echo "FAIL: nbdkit took $STOP_MS ms to exit in a remap storm (limit $limit)"
  failures=$((failures + 1))
fi
wait_writers
restart_check "$disk" "$tmp/log2"
entries=$(le_u32 "$disk" $(( $(header_b "$disk") + 152 )))
echo "storm: the table holds $entries entries"

# ---- 2. A slow plugin: every write or flush takes 2 s. ----
disk=$tmp/slow.img
truncate -s 64M "$disk"
: >"$list"
start_server sock "$tmp/log3" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-spare-size=20%
printf 'write 256-3071\ndelay-write 2000\n' >"$list"
writers "$sock" 4
# Let the first writes fail and their remaps begin (each plugin call
# takes 2 s), then stop in the middle.
sleep 2.5
busy=$(running_writers)
echo "slow: $(grep -c "injecting write error" "$tmp/log3") write errors injected, $busy writers busy"
limit=$(( 2000 + $(scaled_ms 1000) ))
STOP_TIMEOUT_MS=$(( 2000 + $(scaled_ms 4000) )) stop_server "$sock"
if [ "$STOP_MS" -gt "$limit" ]; then
  echo "FAIL: with a slow plugin nbdkit took $STOP_MS ms to exit (limit $limit)"
  failures=$((failures + 1))
fi
wait_writers
: >"$list"
restart_check "$disk" "$tmp/log4"

[ $failures -eq 0 ] || fail "$failures shutdown checks failed"
echo "$test_name: PASS"
