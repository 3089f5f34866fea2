#!/usr/bin/env bash
# Proves the live control socket and the metrics file: every command
# answers in JSON; bad input (garbage, a 1 MB line, a sector past the
# end, too many clients, a client that never sends) gets an error or
# is dropped and never disturbs I/O; the socket is 0600, replaces a
# stale one, refuses a path in use; shutdown with an idle client is
# prompt and removes the socket; the metrics file is valid Prometheus
# text whose numbers match status.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-io nbdinfo python3

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
prom=$tmp/remap.prom
ss=4096
truncate -s 64M "$disk"
: >"$list"

# 1. A stale socket (its server died) is replaced.
/usr/bin/python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$ctl"
[ -S "$ctl" ] || fail "could not make a stale socket"
start_server sock "$tmp/log" -v \
  --filter="$REMAP_FILTER" --filter="$BADSECTOR_FILTER" \
  file "$disk" badsector-file="$list" remap-control="$ctl" \
  remap-metrics-file="$prom"
[ "$(stat -c %a "$ctl")" = 600 ] || fail "socket mode is $(stat -c %a "$ctl")"

# 2. Every command.
ctlcmd help | grep -q '"ok":true,"commands"' || fail "help"
[ "$(ctl_get health)" = ok ] || fail "a new disk is not healthy"
[ "$(ctl_get mode)" = internal ] || fail "mode"
[ "$(ctl_get geometry.sector_size)" -eq $ss ] || fail "sector size"
echo "write 3" >"$list"
qio "$sock" -c "write -P 0x11 0 64k"
: >"$list"
ctlcmd list | grep -q '"total":1,"from":0,"entries":\[{"sector":3,"state":"remapped"' ||
  fail "list: $(ctlcmd list)"
ctlcmd "remap 9" | grep -q '"sector":9,"state":"remapped"' || fail "remap"
qio "$sock" -c "read -P 0x11 $((9*ss)) $ss"   # data came along
ctlcmd "list 1 1" | grep -q '"entries":\[{"sector":9,.*"count":1,"next":null' ||
  fail "paged list: $(ctlcmd 'list 1 1')"
ctlcmd "list 0 1" | grep -q '"count":1,"next":1' || fail "paging"
ctlcmd "unmap 9" | grep -q '"sector":9,"state":"normal"' || fail "unmap"
qio "$sock" -c "read -P 0x11 $((9*ss)) $ss"   # data went back
echo "write 3" >"$list"
ctlcmd "unmap 3" | grep -q '"ok":false,"error":"sector 3 does not keep' ||
  fail "unmap of a still-bad sector was not refused"
: >"$list"
ctlcmd "unmap 4" | grep -q 'not remapped' || fail "unmap of a normal sector"
ctlcmd sync | grep -q '"ok":true,"generation":' || fail "sync"
[ "$(ctl_get health)" = degraded ] || fail "health with a remap is not degraded"

# 3. Bad input: each gets an error reply, the server carries on.
for bad in "bogus" "remap" "remap x" "remap -1" "remap 99999999999" \
           "list x" "list 0 0" "status extra" "unmap 1 2 3 4"; do
  ctlcmd "$bad" | grep -q '"ok":false,"error":' || fail "no error for '$bad'"
done
ctlcmd "remap 99999999999" | grep -q "past the end" || fail "past the end"
# Garbage bytes and a 1 MB line.
/usr/bin/python3 - "$ctl" <<'PY' || fail "garbage/long-line handling"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
s.sendall(b"\x00\xff\xfe garbage\n")
assert b'"ok":false' in s.recv(4096)
s.close()
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
try:
    s.sendall(b"x" * (1 << 20) + b"\n")
except (BrokenPipeError, ConnectionResetError):
    pass
data = b""
try:
    while True:
        d = s.recv(4096)
        if not d: break
        data += d
except ConnectionResetError:
    pass
assert b"line too long" in data, data
PY
# Many clients at once, and one that never sends: the extra ones are
# turned away, the others and the data path keep working.
/usr/bin/python3 - "$ctl" "$(uri "$sock")" <<'PY' || fail "many clients"
import socket, subprocess, sys, time
idle = []
for i in range(20):
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
    idle.append(s)
time.sleep(0.5)
refused = 0
for s in idle:
    s.setblocking(False)
    try:
        if b"too many" in s.recv(4096): refused += 1
    except BlockingIOError:
        pass
assert refused == 4, refused
r = subprocess.run(["timeout", "20", "qemu-io", "-f", "raw", sys.argv[2],
                    "-c", "write -P 0x22 1M 64k", "-c", "read -P 0x22 1M 64k"],
                   capture_output=True)
assert r.returncode == 0 and b"fail" not in r.stdout.lower(), r
for s in idle: s.close()
PY
ctlcmd status | grep -q '"ok":true' || fail "status after the crowd"

# 4. Metrics: valid Prometheus text, matching status.
ctlcmd sync >/dev/null
sleep 1.5
/usr/bin/python3 "$top_srcdir/tests/promcheck.py" "$prom" >"$tmp/samples" ||
  fail "invalid metrics file"
metric () { awk -v n="$1" '$1 == n { print $2 }' "$tmp/samples"; }
[ "$(metric nbdkit_remap_spares_total)" -eq "$(ctl_get spares.total)" ] ||
  fail "spares_total differs"
[ "$(metric nbdkit_remap_spares_used)" -eq "$(ctl_get spares.used)" ] ||
  fail "spares_used differs"
[ "$(metric nbdkit_remap_remaps_total)" -eq "$(ctl_get counters.remaps)" ] ||
  fail "remaps differ"
[ "$(metric nbdkit_remap_metadata_syncs_total)" -eq "$(ctl_get metadata.syncs)" ] ||
  fail "syncs differ"
[ "$(metric 'nbdkit_remap_health{state="degraded"}')" -eq 1 ] ||
  fail "health metric"

# 5. A path in use by this server is refused to a second one; a path
#    that is not a socket is refused.
cp "$disk" "$tmp/disk2.img"
r=0; try_start "$tmp/log2" --filter="$REMAP_FILTER" file "$tmp/disk2.img" \
  remap-control="$ctl" || r=$?
[ $r -ne 0 ] && [ $r -ne $TRY_STARTED ] || fail "a live socket was taken over"
grep -q "in use by another running server" "$tmp/log2" || fail "message"
r=0; try_start "$tmp/log3" --filter="$REMAP_FILTER" file "$tmp/disk2.img" \
  remap-control="$list" || r=$?
[ $r -ne 0 ] && [ $r -ne $TRY_STARTED ] || fail "a regular file was accepted"
grep -q "is not a socket" "$tmp/log3" || fail "message"
[ -f "$list" ] || fail "the regular file was removed"

# 6. Shutdown with an idle client connected is prompt, and removes the
#    socket.
/usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(30)' \
  "$ctl" &
idle=$!
track_pid $idle
sleep 0.3
stop_server "$sock"
[ "$STOP_MS" -lt "$(scaled_ms 1000)" ] ||
  fail "shutdown took $STOP_MS ms with an idle client"
[ ! -e "$ctl" ] || fail "the socket was not removed"
kill $idle 2>/dev/null || true
echo "$test_name: PASS"
