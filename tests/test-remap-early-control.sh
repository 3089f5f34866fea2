#!/usr/bin/env bash
# Proves that the control socket and the metrics file do not wait for
# the first NBD client (which loads the table, see the man page's
# DESIGN NOTES): before any client, status answers that the table is
# loaded when the first client connects, help works, the commands that
# need the table fail saying the same, the metrics file is valid
# Prometheus text saying the table is not loaded, and nothing is
# written to the disk; after a real client, status and the metrics
# file show the table.  A read-only server over a blank disk, refused
# at its first client, still exits at once with status 1 while a
# control client is connected, and removes its socket; under --run the
# command gets its status reply before it connects.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo python3

disk=$tmp/disk.img
ctl=$tmp/ctl.sock
prom=$tmp/remap.prom
truncate -s 64M "$disk"
blank_md5=$(file_md5 "$disk")
why="loaded when the first NBD client connects"

# metric NAME: its value in the metrics file (checked first).
metric ()
{
  /usr/bin/python3 "$top_srcdir/tests/promcheck.py" "$prom" >"$tmp/samples" ||
    fail "the metrics file is not valid Prometheus text: $(cat "$prom")"
  awk -v n="$1" '$1 == n { print $2 }' "$tmp/samples"
}

# 1. A server no client has connected to yet.
spawn_server sock "$tmp/log1" --filter="$REMAP_FILTER" file "$disk" \
  remap-control="$ctl" remap-metrics-file="$prom"
deadline=$(( $(now_ms) + $(scaled_ms 10000) ))
until [ -S "$ctl" ]; do
  [ "$(now_ms)" -lt $deadline ] || fail "no control socket"
  sleep 0.05
done
status=$(ctlcmd status) || fail "no status reply before the first client"
echo "$status"
[ "$(ctl_get state)" = waiting ] || fail "status before the first client: $status"
echo "$status" | grep -q "$why" || fail "status does not say why: $status"
ctlcmd help | grep -q '"ok":true,"commands"' || fail "help before the first client"
for cmd in list "list 0 10" sync "remap 1" "unmap 1"; do
  reply=$(ctlcmd "$cmd")
  echo "$cmd: $reply"
  echo "$reply" | grep -q '^{"ok":false,"error":"the remap table is not loaded yet' ||
    fail "$cmd before the first client: $reply"
  echo "$reply" | grep -q "$why" || fail "$cmd does not say why: $reply"
done
ctlcmd bogus | grep -q '"error":"unknown command' || fail "an unknown command"
[ -f "$prom" ] || fail "no metrics file before the first client"
[ "$(metric nbdkit_remap_table_loaded)" = 0 ] ||
  fail "the metrics file does not say the table is not loaded: $(cat "$prom")"
[ -z "$(metric nbdkit_remap_spares_total)" ] ||
  fail "the metrics file has spares before the table is loaded"
[ "$(file_md5 "$disk")" = "$blank_md5" ] ||
  fail "the disk was written before the first client"

# 2. The first client loads the table; status and the metrics file
#    show it as soon as that client is served.
qio "$sock" -c "write -P 0x5a 0 64k" -c "read -P 0x5a 0 64k"
[ "$(ctl_get state)" = loaded ] || fail "status after the first client: $(ctlcmd status)"
[ "$(ctl_get health)" = ok ] || fail "health after the first client"
[ "$(metric nbdkit_remap_table_loaded)" = 1 ] ||
  fail "the metrics file does not say the table is loaded: $(cat "$prom")"
[ "$(metric nbdkit_remap_spares_total)" = "$(ctl_get spares.total)" ] ||
  fail "the metrics file does not show the table: $(cat "$prom")"
ctlcmd list | grep -q '"ok":true,"total":0' || fail "list after the first client"
ctlcmd "remap 3" | grep -q '"sector":3,"state":"remapped"' ||
  fail "remap after the first client"
stop_server "$sock"
[ ! -e "$ctl" ] || fail "the control socket was left behind"

# 3. Refused at the first client (-r over a blank disk: nothing to
#    load, and formatting would write), with a control client connected
#    and waiting: nbdkit still exits at once, with status 1.
blank=$tmp/blank.img
truncate -s 64M "$blank"
spawn_server sock "$tmp/log3" -r --filter="$REMAP_FILTER" file "$blank" \
  remap-control="$ctl" remap-metrics-file="$prom"
wrapper=$(cat "$sock.wrapper")
/usr/bin/python3 - "$ctl" "$REMAP_TIME_SCALE" >"$tmp/held.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20 * int(sys.argv[2]))
s.connect(sys.argv[1])
s.sendall(b"status\n")
print(s.makefile().readline().strip(), flush=True)
try:
    while s.recv(4096):
        pass
    print("closed", flush=True)
except socket.timeout:
    print("still open", flush=True)
PY
held=$!
track_pid $held
deadline=$(( $(now_ms) + $(scaled_ms 20000) ))
until grep -q '"state":"waiting"' "$tmp/held.out"; do
  [ "$(now_ms)" -lt $deadline ] || fail "the held client got no status: $(cat "$tmp/held.out")"
  sleep 0.05
done
! timeout 10 nbdinfo --size "$(uri "$sock")" >/dev/null 2>&1 ||
  fail "a blank disk was served read-only"
# Bounded: a server that does not exit fails here instead of hanging.
timeout $(( $(scaled_ms 10000) / 1000 )) tail --pid="$wrapper" -f /dev/null ||
  fail "nbdkit did not exit after refusing its first client"
r=0; wait "$wrapper" || r=$?
cat "$tmp/log3"
[ $r -eq 1 ] || fail "nbdkit exited with status $r after refusing, not 1"
grep -q "read-only" "$tmp/log3" || fail "no read-only message"
[ ! -e "$ctl" ] || fail "the control socket was left behind after a refusal"
timeout 30 tail --pid=$held -f /dev/null
grep -q closed "$tmp/held.out" || fail "the held control client: $(cat "$tmp/held.out")"
[ "$(file_md5 "$blank")" = "$blank_md5" ] || fail "the blank image was written"

# 4. The same under --run: the command's status is answered before it
#    connects; then nbdkit exits at once, non-zero.
r=0
timeout $(( $(scaled_ms 20000) / 1000 )) \
  nbdkit -r -U "$tmp/run.sock" --filter="$REMAP_FILTER" file "$blank" \
    remap-control="$ctl" \
    --run "timeout 10 $top_srcdir/tests/ctl.py $ctl status >$tmp/run.out;
           nbdinfo --size \"\$uri\"" >"$tmp/log4" 2>&1 || r=$?
cat "$tmp/log4" "$tmp/run.out"
[ $r -ne 124 ] || fail "nbdkit --run hung"
[ $r -ne 0 ] || fail "nbdkit --run served a blank disk read-only"
grep -q '"state":"waiting"' "$tmp/run.out" ||
  fail "the --run command got no status before connecting"
[ ! -e "$ctl" ] || fail "the control socket was left behind under --run"
[ "$(file_md5 "$blank")" = "$blank_md5" ] || fail "the blank image was written"
