#!/usr/bin/env bash
# Proves that the control socket takes over only its own dead socket,
# and that one client cannot hold up the others:
#   - a live datagram socket at the path is refused and left working;
#   - a socket of another account (nobody), even a dead one, is refused
#     and left in place (this part runs only as root);
#   - while a client reads a long stream of big `list' replies slowly,
#     and another never reads its reply, a third client's `status' is
#     answered, and the one that never reads is dropped.
source "$(dirname "$0")/functions.sh"
set -e
requires nbdinfo python3

disk=$tmp/disk.img
ctl=$tmp/ctl.sock
truncate -s 64M "$disk"

# refused LOG WHAT: a server with the control socket at $ctl refuses
# to start and says why; the thing at $ctl stays.
refused ()
{
  local r=0
  try_start "$1" --filter="$REMAP_FILTER" file "$disk" \
    remap-control="$ctl" || r=$?
  cat "$1"
  [ $r -ne $TRY_STARTED ] || fail "started over $2"
  [ $r -ne 0 ] || fail "exited with status 0 over $2"
  [ -S "$ctl" ] || fail "$2 was removed"
}

# 1. A live datagram socket of this user: connect() to it fails, but
#    not with ECONNREFUSED.  Refused, and it still receives.
/usr/bin/python3 - "$ctl" >"$tmp/dgram.out" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
print("bound", flush=True)
print(s.recv(100).decode(), flush=True)
PY
dgram=$!
track_pid $dgram
deadline=$(( $(now_ms) + $(scaled_ms 10000) ))
until grep -q bound "$tmp/dgram.out"; do
  [ "$(now_ms)" -lt $deadline ] || fail "the datagram socket was not made"
  sleep 0.05
done
refused "$tmp/log1" "a live datagram socket"
grep -q "is a socket that is not a stale control socket" "$tmp/log1" ||
  fail "no message for a datagram socket"
/usr/bin/python3 -c '
import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"still here", sys.argv[1])
' "$ctl" || fail "the datagram socket no longer receives"
timeout 20 tail --pid=$dgram -f /dev/null
grep -q "still here" "$tmp/dgram.out" || fail "the datagram was lost"
rm -f "$ctl"

# 2. Sockets of another account, in a directory it may write.
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$tmp"
  shared=$tmp/shared
  mkdir -m 1777 "$shared"
  ctl=$shared/ctl.sock
  as_nobody () { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
  # A dead one (bound, its process gone): it refuses connections like
  # our own stale socket would, but it is not ours.
  as_nobody /usr/bin/python3 -c '
import socket, sys
socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$ctl"
  [ "$(stat -c %U "$ctl")" = nobody ] || fail "nobody's socket was not made"
  refused "$tmp/log2" "nobody's dead socket"
  grep -q "is a socket of another user" "$tmp/log2" ||
    fail "no message for another user's socket"
  [ "$(stat -c %U "$ctl")" = nobody ] || fail "nobody's socket was replaced"
  rm -f "$ctl"
  ctl=$tmp/ctl.sock
else
  echo "$test_name: not root (or no setpriv): another account's socket not tried"
fi

# 3. A slow reader and a client that never reads do not hold up status.
#    5000 remapped sectors make a `list 0 5000' reply of about 240 KB,
#    more than a socket buffer holds.
start_server sock "$tmp/log3" --filter="$REMAP_FILTER" file "$disk" \
  remap-sector-size=512 remap-spare-size=10% remap-add=0-4999 \
  remap-control="$ctl"
[ "$(ctl_get spares.used)" -eq 5000 ] || fail "the table was not filled"
/usr/bin/python3 - "$ctl" "$REMAP_TIME_SCALE" <<'PY' || fail "status was held up"
import select, socket, sys, threading, time
path, scale = sys.argv[1], int(sys.argv[2])

def client():
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30 * scale)
    s.connect(path)
    return s

# The slow reader: 300 big replies (70 MB) asked at once, 16 KB taken
# every 20 ms, so that it always makes progress, slowly.
slow = client()
slow.sendall(b"list 0 5000\n" * 300)
first = threading.Event()
stop = threading.Event()
def read_slowly():
    while not stop.is_set():
        try:
            if not slow.recv(16384):
                return
        except OSError:
            return
        first.set()
        time.sleep(0.02)
reader = threading.Thread(target=read_slowly)
reader.start()
assert first.wait(30 * scale), "the slow reader got nothing"

# The one that never reads.
never = client()
never.sendall(b"list 0 5000\n" * 5)

# status must come back: the limit is generous, the old behaviour
# (serving the slow reader to the end first) takes minutes.
s = client()
s.settimeout(10 * scale)
s.sendall(b"status\n")
data = b""
try:
    while not data.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        data += d
except socket.timeout:
    stop.set(); reader.join()
    sys.exit("no status reply within %d s while a client reads slowly"
             % (10 * scale))
assert data.startswith(b'{"ok":true,"health"'), data
s.close()

# The one that never reads is dropped (its reply deadline passes).
p = select.poll()
p.register(never, select.POLLRDHUP)
assert p.poll(60000 * scale), "a client that never reads was not dropped"
never.close()
stop.set()
reader.join()
slow.close()
PY
ctlcmd status | grep -q '"ok":true' || fail "status after the slow clients"
qio "$sock" -c "write -P 0x33 1M 64k" -c "read -P 0x33 1M 64k"
stop_server "$sock"
