# nbdkit-remap test helpers.  Sourced by every tests/test-*.sh (bash).
#
# Gives each test:
#   $tmp                     a private temporary directory, removed on exit
#   $REMAP_FILTER, $BADSECTOR_FILTER   absolute paths of the two filters
#   requires CMD...          skip (exit 77) unless every CMD is installed
#   fail MSG / skip MSG      end the test (exit 1 / exit 77)
#   start_server VAR LOG ARGS...   nbdkit -f -U SOCK ARGS in the background,
#                            waits until it serves; the socket path is put
#                            in $VAR; fails (printing LOG) if it dies
#   stop_server [SOCK]       SIGTERM, bounded wait (STOP_TIMEOUT_MS, default
#                            scaled_ms 10000), then SIGKILL; sets STOP_MS
#                            (time to exit) and STOP_RC (exit status);
#                            fails the test if nbdkit had to be killed or
#                            did not exit with status 0
#   spawn_server VAR LOG ARGS...   like start_server, but connects no
#                            client: only waits for nbdkit's PID file
#                            (for what a server does before its first
#                            client); stop it with stop_server
#   try_start LOG ARGS...    like start_server but for servers expected to
#                            refuse: returns nbdkit's exit status, or
#                            TRY_STARTED (200) if it did start (then stopped)
#   run_refused LOG ARGS...  nbdkit -f ... --run true; returns its status
#   uri SOCK                 the NBD URI of a socket
#   export_size SOCK         the export size in bytes (nbdinfo)
#   qio SOCK ARGS...         qemu-io on the export; fails the test on error
#   qio_eio SOCK ARGS...     qemu-io on the export must fail with EIO
#   bytes_all FILE OFF LEN HEX    true if every byte in the range is HEX
#   le_u64 / le_u32 FILE OFF      little-endian integers from a file
#   header_b FILE [SLOT]     offset of the last metadata header slot
#   poke FILE OFF BYTES      write printf-escaped BYTES at OFF in place
#   file_md5 FILE            checksum of a file
#   now_ms                   milliseconds (date +%s%N)
#   scaled_ms MS             MS times REMAP_TIME_SCALE (default 1): every
#                            time limit that nbdkit's speed decides is
#                            scaled, so that it holds under the
#                            sanitizers and valgrind too
#   track_pid PID            kill PID during cleanup if still running
#   ctlcmd CMD... / ctl_get FIELD   the control socket at $ctl
#
# KEEP_TMP=1 keeps $tmp of a failed test for inspection.
# Under make check-valgrind (REMAP_VALGRIND=1) every nbdkit keeps a
# valgrind log in $tmp/valgrind, and the test fails at its cleanup if
# any of them reports an error or has no summary (its nbdkit was
# killed before valgrind could check it).
# Every client call is wrapped in `timeout`.  Only Unix sockets are used.

set -e

# nbdsh needs the system python3 (which has the nbd module).  Makefile
# sets PATH=/usr/bin:$PATH; do the same when run by hand.
case ":$PATH:" in
  /usr/bin:*) ;;
  *) PATH=/usr/bin:$PATH; export PATH ;;
esac
# tests/wrap/nbdkit runs nbdkit under valgrind or with a sanitizer
# runtime when the test run asks for it; it holds nothing but nbdkit.
if [ -n "$REMAP_WRAP_DIR" ] && [ -x "$REMAP_WRAP_DIR/nbdkit" ]; then
  PATH=$REMAP_WRAP_DIR:$PATH
  export PATH
fi

_test_dir=$(cd "$(dirname "$0")" && pwd)
_top_dir=$(cd "$_test_dir/.." && pwd)
: "${REMAP_FILTER:=$_top_dir/filter/.libs/nbdkit-remap-filter.so}"
: "${BADSECTOR_FILTER:=$_top_dir/tests/badsector/.libs/nbdkit-badsector-filter.so}"
export REMAP_FILTER BADSECTOR_FILTER
: "${top_srcdir:=$_top_dir}" "${srcdir:=$_top_dir}"
export top_srcdir srcdir

test_name=$(basename "$0" .sh)
TRY_STARTED=200

fail ()
{
  echo "$test_name: FAIL: $*" >&2
  exit 1
}

skip ()
{
  echo "$test_name: SKIP: $*" >&2
  exit 77
}

requires ()
{
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || skip "$cmd is not installed"
  done
}

requires nbdkit timeout mktemp od dd cmp md5sum truncate
for _f in "$REMAP_FILTER" "$BADSECTOR_FILTER"; do
  [ -f "$_f" ] || fail "$_f not found (run make first)"
done

# ---- Temporary directory and cleanup. ----

tmp=$(mktemp -d /tmp/remap-test.XXXXXXXX)
_pids=""                        # every process we started
_servers=""                     # "sock" entries of running servers

# tests/wrap/nbdkit puts valgrind's logs here (see the top).
if [ -n "$REMAP_VALGRIND" ]; then
  REMAP_VALGRIND_LOGS=$tmp/valgrind
  mkdir "$REMAP_VALGRIND_LOGS"
  export REMAP_VALGRIND_LOGS
fi

track_pid ()
{
  _pids="$_pids $1"
}

# True if every valgrind log ends with a summary of no errors.  Prints
# each log that does not.
_valgrind_clean ()
{
  local log n clean=0
  for log in "$REMAP_VALGRIND_LOGS"/*.log; do
    [ -e "$log" ] || continue
    n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -n 1)
    [ "$n" = 0 ] && continue
    cat "$log" >&2
    if [ -z "$n" ]; then
      echo "$test_name: FAIL: no summary in $(basename "$log") (above):" \
           "that nbdkit was killed before valgrind could check it" >&2
    else
      echo "$test_name: FAIL: valgrind found $n error(s) in nbdkit" \
           "($(basename "$log"), above)" >&2
    fi
    clean=1
  done
  return $clean
}

_cleanup ()
{
  local rc=$? p
  # Under valgrind, nbdkit's exit runs the leak check: give it time.
  local ticks=40
  [ -z "$REMAP_VALGRIND" ] || ticks=600
  for p in $_pids; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in $_pids; do
    # Bounded: give each 2 s (30 s under valgrind), then SIGKILL.
    local i=0
    while kill -0 "$p" 2>/dev/null && [ $i -lt $ticks ]; do
      sleep 0.05; i=$((i+1))
    done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  # An error that valgrind found fails even a test that passed (or
  # skipped after starting nbdkit).
  if [ -n "$REMAP_VALGRIND_LOGS" ] && ! _valgrind_clean &&
     { [ $rc -eq 0 ] || [ $rc -eq 77 ]; }; then
    rc=1
  fi
  if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -n "$KEEP_TMP" ]; then
    echo "$test_name: keeping $tmp" >&2
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap _cleanup EXIT
trap 'exit 1' INT TERM HUP

now_ms ()
{
  echo $(( $(date +%s%N) / 1000000 ))
}

: "${REMAP_TIME_SCALE:=1}"
scaled_ms ()
{
  echo $(( $1 * REMAP_TIME_SCALE ))
}

uri ()
{
  echo "nbd+unix:///?socket=$1"
}

# Per-server bookkeeping lives in files next to the socket:
#   SOCK.wrapper  the PID of the `timeout` process we waited on
#   SOCK.pid      nbdkit's own PID (from -P)
#   SOCK.log      the log file
_server_count=0

# Waits until the server on $1 answers, or its wrapper ($2) exits.
# Returns 0 when serving, 1 if it exited (status in _exit_rc), 2 on
# time-out.  The socket is bound before the filter's after_fork runs,
# so "serving" is checked with a real NBD handshake.
_wait_ready ()
{
  local sock=$1 wrapper=$2 deadline=$(( $(now_ms) + ${3:-10000} ))
  _exit_rc=0
  while [ "$(now_ms)" -lt "$deadline" ]; do
    if ! kill -0 "$wrapper" 2>/dev/null; then
      wait "$wrapper" 2>/dev/null && _exit_rc=0 || _exit_rc=$?
      return 1
    fi
    if [ -S "$sock" ] &&
       timeout 5 nbdinfo --size "$(uri "$sock")" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.05
  done
  return 2
}

# Starts nbdkit in the background: nbdkit -f -U SOCK -P PIDFILE ARGS.
# Sets _sock, _wrapper, _nbdkit_pid.
_spawn ()
{
  local log=$1; shift
  _server_count=$((_server_count + 1))
  _sock=$tmp/nbd$_server_count.sock
  rm -f "$_sock" "$_sock.pid"
  timeout $(( $(scaled_ms 60000) / 1000 )) \
    nbdkit -f -U "$_sock" -P "$_sock.pid" "$@" >"$log" 2>&1 &
  _wrapper=$!
  track_pid "$_wrapper"
  echo "$_wrapper" >"$_sock.wrapper"
  echo "$log" >"$_sock.log"
}

start_server ()
{
  local var=$1 log=$2 r=0 limit
  shift 2
  requires nbdinfo
  limit=$(scaled_ms 10000)
  _spawn "$log" "$@"
  _wait_ready "$_sock" "$_wrapper" "$limit" || r=$?
  case $r in
    0) ;;
    1) cat "$log" >&2
       fail "nbdkit exited with status $_exit_rc instead of starting: nbdkit $*" ;;
    *) cat "$log" >&2
       fail "nbdkit did not start serving within $limit ms: nbdkit $*" ;;
  esac
  if [ -s "$_sock.pid" ]; then
    _nbdkit_pid=$(cat "$_sock.pid")
    track_pid "$_nbdkit_pid"
  fi
  _servers="$_servers $_sock"
  eval "$var=\$_sock"
  _last_sock=$_sock
}

spawn_server ()
{
  local var=$1 log=$2 deadline
  shift 2
  _spawn "$log" "$@"
  deadline=$(( $(now_ms) + $(scaled_ms 10000) ))
  until [ -s "$_sock.pid" ]; do
    if ! kill -0 "$_wrapper" 2>/dev/null; then
      cat "$log" >&2
      fail "nbdkit exited instead of starting: nbdkit $*"
    fi
    [ "$(now_ms)" -lt $deadline ] || fail "nbdkit wrote no PID file: nbdkit $*"
    sleep 0.05
  done
  _nbdkit_pid=$(cat "$_sock.pid")
  track_pid "$_nbdkit_pid"
  _servers="$_servers $_sock"
  eval "$var=\$_sock"
  _last_sock=$_sock
}

# stop_server [SOCK]: the last server started if no SOCK.
# Sets STOP_MS (ms from SIGTERM to exit) and STOP_RC (exit status).
# nbdkit exits with status 0 on SIGTERM, so anything else is a failure
# of the test, whatever it checks next: a server that hangs at exit
# and must be killed, a sanitizer's report (status 1), valgrind's
# errors (status 119 under make check-valgrind).
stop_server ()
{
  local sock=${1:-$_last_sock} wrapper pid start deadline killed=
  local bound=${STOP_TIMEOUT_MS:-$(scaled_ms 10000)}
  wrapper=$(cat "$sock.wrapper")
  pid=$(cat "$sock.pid" 2>/dev/null || echo "$wrapper")
  start=$(now_ms)
  deadline=$((start + bound))
  kill -TERM "$pid" 2>/dev/null || true
  # Bounded wait, then SIGKILL.
  while kill -0 "$pid" 2>/dev/null && [ "$(now_ms)" -lt $deadline ]; do
    sleep 0.01
  done
  STOP_MS=$(( $(now_ms) - start ))
  if kill -0 "$pid" 2>/dev/null; then
    echo "$test_name: nbdkit (pid $pid) still running $bound ms after SIGTERM, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
    killed=yes
  fi
  wait "$wrapper" 2>/dev/null && STOP_RC=0 || STOP_RC=$?
  echo "$test_name: nbdkit (pid $pid) exited ${STOP_MS} ms after SIGTERM, status $STOP_RC"
  rm -f "$sock"
  [ -z "$killed" ] ||
    fail "nbdkit (pid $pid) did not exit within $bound ms of SIGTERM"
  if [ "$STOP_RC" -ne 0 ]; then
    tail -n 20 "$(cat "$sock.log")" >&2
    fail "nbdkit (pid $pid) exited with status $STOP_RC after SIGTERM"
  fi
}

# try_start LOG ARGS...: for a server that should refuse to start.
try_start ()
{
  local log=$1 r=0 limit
  shift
  requires nbdinfo
  limit=$(scaled_ms 10000)
  _spawn "$log" "$@"
  _wait_ready "$_sock" "$_wrapper" "$limit" || r=$?
  case $r in
    0) _last_sock=$_sock
       stop_server "$_sock" >/dev/null
       return $TRY_STARTED ;;
    1) return $_exit_rc ;;
    *) cat "$log" >&2
       fail "nbdkit neither started nor exited within $limit ms: nbdkit $*" ;;
  esac
}

# run_refused LOG ARGS...: for a server that should refuse to start.
# Returns nbdkit's exit status, or 0 if it did start (then stopped).
# (Not nbdkit --run: its exit status is the command's, which hides a
# server that failed under some runtimes, such as the sanitizers'.)
run_refused ()
{
  local r=0
  try_start "$@" || r=$?
  [ $r -eq $TRY_STARTED ] && return 0
  return $r
}

export_size ()
{
  requires nbdinfo
  timeout 10 nbdinfo --size "$(uri "$1")"
}

# qio SOCK -c CMD [-c CMD...]: runs qemu-io on the export and fails the
# test if qemu-io fails or reports any failed or mismatched I/O.
qio ()
{
  local sock=$1 out r=0
  shift
  out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" "$@" 2>&1) || r=$?
  if [ $r -ne 0 ] || echo "$out" | grep -qiE 'fail|error|mismatch'; then
    echo "$out" >&2
    fail "qemu-io $* (status $r)"
  fi
}

# qio_eio SOCK ARGS...: qemu-io on the export must fail with EIO.
qio_eio ()
{
  local sock=$1 out
  shift
  out=$(timeout 30 qemu-io -f raw "$(uri "$sock")" "$@" 2>&1) || true
  echo "$out" | grep -q "Input/output error" ||
    fail "qemu-io $* did not fail with EIO: $out"
}

# bytes_all FILE OFFSET LENGTH HEXBYTE: true if every byte is HEXBYTE.
bytes_all ()
{
  local got
  got=$(od -An -v -t x1 -j "$2" -N "$3" "$1" | tr -s ' \n' '\n\n' |
          grep -v '^$' | sort -u | tr '\n' ' ')
  [ "$got" = "$(printf '%02x' "0x${4#0x}") " ]
}

# le_u64 FILE OFFSET, le_u32 FILE OFFSET: little-endian integers.
le_u64 ()
{
  local b v=0 i
  b=($(od -An -v -t u1 -j "$2" -N 8 "$1"))
  for ((i = 7; i >= 0; i--)); do v=$(( (v << 8) | b[i] )); done
  echo "$v"
}

le_u32 ()
{
  local b v=0 i
  b=($(od -An -v -t u1 -j "$2" -N 4 "$1"))
  for ((i = 3; i >= 0; i--)); do v=$(( (v << 8) | b[i] )); done
  echo "$v"
}

# header_b FILE [SLOT]: offset of the last whole header slot (header B,
# see filter/format.h), SLOT = max(sector size, 4096), default 4096.
header_b ()
{
  local size slot=${2:-4096}
  size=$(stat -c %s "$1")
  echo $(( size / slot * slot - slot ))
}

# Writes bytes (given as \xNN escapes) into FILE at OFFSET in place.
poke ()
{
  printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# ctlcmd CMD...: sends each command to the filter's control socket $ctl
# and prints the JSON replies; ctl_get FIELD prints one field of the
# status reply (like counters.remaps).
ctlcmd ()
{
  timeout 20 "$_top_dir/tests/ctl.py" "$ctl" "$@"
}

ctl_get ()
{
  ctlcmd --get "$1" status
}

file_md5 ()
{
  md5sum <"$1" | cut -d' ' -f1
}
