#!/usr/bin/env bash
# Proves what happens to errors that a page cache keeps until a flush
# (the test source's writeback sectors, which behave like the kernel's
# cache over a failing disk):
#  1. without write-through, the write succeeds, the data is lost at
#     writeback and the flush fails: the client is told, once;
#  2. a writeback error that reaches the filter through a later FUA
#     write is not hidden by the filter's retry of that write: the
#     client's next flush fails;
#  3. with remap-write-through=yes, the same write fails at the plugin,
#     is retried per sector and remapped from the client's buffer: the
#     write and the flush succeed and the data reads back after a
#     restart (spares in a file);
#  4. the same with the spares on the disk, where the filter's own
#     context hears the error too: a write may fail once, never
#     silently;
#  5. with write-through, a flush that runs while a write is between
#     its caching and its own writeback takes that write's error: the
#     write must not be acknowledged with its data gone;
#  6. a FUA write whose error a retry does not reproduce makes the next
#     flush fail (unless remap-plugin-cache=no);
#  7. so does one whose retry fails again: the error may have covered
#     another write too;
#  8. of two flushes sent together after a write that fails at
#     writeback, neither succeeds.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdsh

disk=$tmp/disk.img
list=$tmp/bad.txt
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$disk"
echo "writeback 10" >"$list"
echo "writeback 30" >>"$list"

start ()
{
  start_server sock "$1" -v --filter="$REMAP_FILTER" \
    --filter="$BADSECTOR_FILTER" file "$disk" badsector-file="$list" \
    remap-control="$ctl" "${@:2}"
}

# nbdsh on the server; the script gets SS and prints what it finds.
client ()
{
  SS=$ss timeout 60 nbdsh -u "$(uri "$sock")" -c "$1"
}

start "$tmp/log1"

# 1. Sectors 8-11 written (10 fails at writeback): the write succeeds
#    and reads back from the cache; the flush fails; sector 10 is back
#    to its old contents (zeros), its neighbours kept theirs; a second
#    flush succeeds (the error was reported once).
client '
import os, errno
ss = int(os.environ["SS"])
h.pwrite(b"\x11" * 4 * ss, 8 * ss)
assert h.pread(4 * ss, 8 * ss) == b"\x11" * 4 * ss, "cached data not read"
try:
    h.flush()
    raise SystemExit("the flush after a failed writeback succeeded")
except nbd.Error as e:
    assert e.errnum == errno.EIO, e
assert h.pread(ss, 10 * ss) == bytes(ss), "dropped data still read"
assert h.pread(ss, 9 * ss) == b"\x11" * ss
assert h.pread(ss, 11 * ss) == b"\x11" * ss
h.flush()
' || fail "case 1: a writeback error was not reported by the flush"
[ "$(ctl_get counters.remaps)" -eq 0 ] || fail "case 1: something remapped"

# 2. A write to sector 10 is cached; a FUA write to a good sector on
#    the same connection starts the writeback and is told of the error.
#    The filter retries that write (it succeeds, sector 20 is fine), but
#    sector 10's data is gone: the client must hear it, from the FUA
#    write or from the next flush.
client '
import os, errno
ss = int(os.environ["SS"])
h.pwrite(b"\x33" * ss, 10 * ss)
told = False
try:
    h.pwrite(b"\x44" * ss, 20 * ss, nbd.CMD_FLAG_FUA)
except nbd.Error as e:
    told = True
try:
    h.flush()
except nbd.Error as e:
    told = True
if not told:
    raise SystemExit("sector 10 lost its data and no request said so")
' || fail "case 2: a writeback error was hidden by the retry of a FUA write"
stop_server "$sock"

# 3. Write-through, spares in a file of their own: the write to
#    sector 30 fails at the plugin (FUA), is retried per sector and
#    sector 30 is remapped from the client's buffer; the write and the
#    flush succeed.
start "$tmp/log3" remap-write-through=yes remap-spare="$tmp/spares"
client '
import os
ss = int(os.environ["SS"])
h.pwrite(b"\x55" * 3 * ss, 29 * ss)
h.flush()
assert h.pread(3 * ss, 29 * ss) == b"\x55" * 3 * ss
' || fail "case 3: a write through to a failing sector was not remapped"
ctlcmd list | grep -q '"sector":30,"state":"remapped"' ||
  fail "case 3: sector 30 is not remapped: $(ctlcmd list)"
stop_server "$sock"

# ... and the data is there after a restart.
start "$tmp/log4" remap-spare="$tmp/spares"
client '
import os
ss = int(os.environ["SS"])
assert h.pread(3 * ss, 29 * ss) == b"\x55" * 3 * ss, "data lost"
' || fail "case 3: the remapped data did not survive a restart"
stop_server "$sock"

# 4. Write-through with the spares on the disk itself: the filter's own
#    context also hears the writeback error (each context is told), so
#    the metadata write that makes the remap durable may fail once, and
#    with it the client's write.  Never silently: a write that succeeds
#    reads back after a restart, and a retry of a failed one succeeds.
truncate -s 0 "$disk"
truncate -s 64M "$disk"
echo "writeback 40" >"$list"
start "$tmp/log5" remap-write-through=yes
client '
import os
ss = int(os.environ["SS"])
try:
    h.pwrite(b"\x66" * ss, 40 * ss)
except nbd.Error:
    h.pwrite(b"\x66" * ss, 40 * ss)
h.flush()
' || fail "case 4: a retried write through to a failing sector failed"
stop_server "$sock"
start "$tmp/log6"
client '
import os
ss = int(os.environ["SS"])
assert h.pread(ss, 40 * ss) == b"\x66" * ss, "data lost"
' || fail "case 4: the remapped data did not survive a restart"
stop_server "$sock"

# 5. Write-through, spares in a file: the write to sector 50 is cached
#    and then waits (delay-writeback) before its own writeback; a flush
#    on the same connection writes it back meanwhile and hears its
#    error.  The write must then fail, or be remapped with its data.
truncate -s 0 "$disk" "$tmp/spares"
truncate -s 64M "$disk"
printf 'writeback 50\ndelay-writeback %d\n' "$(scaled_ms 1000)" >"$list"
start "$tmp/log7" remap-write-through=yes remap-spare="$tmp/spares"
out=$(DELAY=$(scaled_ms 300) client '
import os, time, errno
ss = int(os.environ["SS"])
def result(c):
    while True:
        try:
            if h.aio_command_completed(c):
                return "ok"
        except nbd.Error as e:
            return "EIO" if e.errnum == errno.EIO else str(e)
        h.poll(-1)
w = h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(b"\x77" * ss)), 50 * ss)
time.sleep(int(os.environ["DELAY"]) / 1000)
f = h.aio_flush()
rw, rf = result(w), result(f)
print("write:", rw, "flush:", rf)
if rw == "ok":
    assert h.pread(ss, 50 * ss) == b"\x77" * ss, \
        "the write was acknowledged and its data is gone"
') || fail "case 5: a write through lost its data to a concurrent flush"
echo "$out"
stop_server "$sock"
# An acknowledged write is there after a restart; a failed one left
# either its data or the old zeros.
case $out in
  *"write: ok"*) want='b"\x77" * ss' ;;
  *) want='b"\x77" * ss, bytes(ss)' ;;
esac
start "$tmp/log8" remap-spare="$tmp/spares"
client "
import os
ss = int(os.environ['SS'])
assert h.pread(ss, 50 * ss) in ($want,), 'sector 50 after a restart'
" || fail "case 5: sector 50 after a restart"
stop_server "$sock"

# 6. An error that a retry does not reproduce cannot be told from an
#    earlier write's writeback error: a FUA write that fails once
#    (write-once) while a write without FUA is not yet flushed makes
#    the next flush fail, unless remap-plugin-cache=no says that the
#    plugin has no cache.  Either way both writes' data is there.
for cache in yes no; do
  truncate -s 0 "$disk"
  truncate -s 64M "$disk"
  echo "write-once 60" >"$list"
  start "$tmp/log-cache-$cache" remap-plugin-cache=$cache
  out=$(client '
import os
ss = int(os.environ["SS"])
h.pwrite(b"\x88" * ss, 61 * ss)
h.pwrite(b"\x99" * ss, 60 * ss, nbd.CMD_FLAG_FUA)
try:
    h.flush()
    print("flush ok")
except nbd.Error:
    print("flush EIO")
assert h.pread(ss, 61 * ss) == b"\x88" * ss
assert h.pread(ss, 60 * ss) == b"\x99" * ss
') || fail "case 6 (remap-plugin-cache=$cache): $out"
  stop_server "$sock"
  case $cache,$out in
    yes,"flush EIO"|no,"flush ok") ;;
    *) fail "case 6: remap-plugin-cache=$cache gave '$out'" ;;
  esac
done

# 7. One writeback error covers every page that failed: a write to
#    sector 70 is cached, and a FUA write to sector 72, which fails at
#    writeback too, is told of both.  Its retry fails again (72 is
#    remapped and the FUA write succeeds), but that does not show that
#    sector 70 was spared: if the flush succeeds, sector 70 must hold
#    its data.
truncate -s 0 "$disk" "$tmp/spares"
truncate -s 64M "$disk"
printf 'writeback 70\nwriteback 72\n' >"$list"
start "$tmp/log9" remap-spare="$tmp/spares"
client '
import os
ss = int(os.environ["SS"])
h.pwrite(b"\xaa" * ss, 70 * ss)
try:
    h.pwrite(b"\xbb" * ss, 72 * ss, nbd.CMD_FLAG_FUA)
except nbd.Error:
    pass
try:
    h.flush()
except nbd.Error:
    raise SystemExit(0)
assert h.pread(ss, 70 * ss) == b"\xaa" * ss, \
    "the flush succeeded and an acknowledged write before it is gone"
' || fail "case 7: a writeback error shared by two writes was hidden"
stop_server "$sock"

# 8. Two flushes sent together after a write to sector 80, which fails
#    at writeback: the plugin tells one of them; the other began after
#    that write was acknowledged too, so it must not succeed either.
#    Every flush first sleeps 300 ms in the test source, so that the
#    second reaches the filter while the first is still running (on a
#    slow server, a sanitizer build, it could otherwise arrive after
#    the first had ended, and no longer be sent "together").
truncate -s 0 "$disk" "$tmp/spares"
truncate -s 64M "$disk"
printf 'writeback 80\ndelay-write 300\n' >"$list"
start "$tmp/log10" remap-spare="$tmp/spares"
out=$(client '
import os, errno
ss = int(os.environ["SS"])
def result(c):
    while True:
        try:
            if h.aio_command_completed(c):
                return "ok"
        except nbd.Error as e:
            return "EIO" if e.errnum == errno.EIO else str(e)
        h.poll(-1)
h.pwrite(b"\xcc" * ss, 80 * ss)
a = h.aio_flush()
b = h.aio_flush()
print(result(a), result(b))
') || fail "case 8: $out"
stop_server "$sock"
[ "$out" = "EIO EIO" ] ||
  fail "case 8: two flushes after a lost write gave '$out', not 'EIO EIO'"
