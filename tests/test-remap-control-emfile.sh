#!/usr/bin/env bash
# The control thread does not spin when it runs out of descriptors.
# The server's open-file limit is lowered (prlimit) to what it holds
# plus two, and control clients connect until accept() fails with
# EMFILE: the listening socket then stays readable, and a thread that
# polled it at once again would burn a CPU.  Over two seconds nbdkit
# must use well under a quarter second of CPU (a spinning thread used
# 0.8 s even on a loaded machine), say why once, and answer again once
# a client leaves.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo python3 prlimit

disk=$tmp/disk.img
ctl=$tmp/ctl.sock
truncate -s 64M "$disk"

start_server sock "$tmp/log" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl"
pid=$_nbdkit_pid

# cpu_ticks: user + system clock ticks nbdkit has used.
cpu_ticks ()
{
  awk '{ print $14 + $15 }' "/proc/$pid/stat"
}

fds=$(ls "/proc/$pid/fd" | wc -l)
soft=$(prlimit --pid "$pid" --nofile --noheadings --output=SOFT)
prlimit --pid "$pid" --nofile=$((fds + 2)):

# Four clients that hold their connections; the last ones cannot be
# accepted.  They stay connected while the CPU is measured.
python3 - "$ctl" "$tmp/held" <<'PY' &
import os, socket, sys, time
socks = []
for _ in range(4):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    socks.append(s)
open(sys.argv[2], "w").close()
time.sleep(4)
PY
held=$!
track_pid $held
deadline=$(( $(now_ms) + $(scaled_ms 10000) ))
until [ -e "$tmp/held" ]; do
  [ "$(now_ms)" -lt $deadline ] || fail "the control clients did not connect"
  sleep 0.05
done
sleep 0.5
t0=$(cpu_ticks)
sleep 2
used=$(( $(cpu_ticks) - t0 ))
hz=$(getconf CLK_TCK)
echo "nbdkit used $used ticks ($hz a second) in 2 s with accept failing"
[ "$used" -lt $(( hz / 4 )) ] ||
  fail "the control thread spun while accept() failed ($used ticks in 2 s)"
grep -q "cannot accept a control client" "$tmp/log" ||
  fail "the log does not say that accept() failed"
[ "$(grep -c "cannot accept a control client" "$tmp/log")" -eq 1 ] ||
  fail "the accept failure was logged more than once"

# Once the clients leave, a new one is answered.
wait $held || true
prlimit --pid "$pid" --nofile="$soft":
ctlcmd status | grep -q '"ok":true' || fail "no status once descriptors were free"
stop_server "$sock"
