# nbdkit-remap robustness suites: helpers shared by tests/crash/*.sh.
# Sourced (bash).  Builds on tests/functions.sh ($tmp, fail, skip,
# requires, now_ms, le_u64, le_u32, header_b, poke, file_md5) and adds
# servers that are started, killed and waited for many times over:
#
#   $work                      scratch directory (in /dev/shm when it has
#                              room, else under $tmp), removed on exit
#   srv_start NAME LOG ARGS... nbdkit -f -U $work/NAME.sock -P ... ARGS in
#                              the background (inside `timeout`); waits
#                              until the socket is bound.  Sets
#                              SRV_SOCK, SRV_PID (nbdkit), SRV_WRAPPER.
#                              Returns 1 if it exited first (SRV_RC).
#   srv_wait_serving NAME [MS] waits for an NBD handshake to succeed
#                              (the table is loaded); 1 if it exited
#                              (SRV_RC), 2 on time-out
#   srv_kill NAME SIG          sends SIG to nbdkit
#   srv_reap NAME [MS]         waits (bounded, then SIGKILL) for it to
#                              exit; sets SRV_RC and SRV_EXIT_MS (from
#                              the srv_kill that preceded it)
#   srv_alive NAME
#   run_bg VAR OUT CMD...      CMD in the background (inside `timeout`,
#                              output to OUT), its PID in VAR; reap_bg PID
#   rnd N                      R = a random number below N (RANDOM=seed
#                              reproduces a run)
#
# Every PID started here is tracked while it lives and forgotten once
# reaped, so cleanup never signals a PID that may have been reused.

crash_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
crash_top=$(cd "$crash_dir/../.." && pwd)
: "${REMAP_FILTER:=$crash_top/filter/.libs/nbdkit-remap-filter.so}"
: "${BADSECTOR_FILTER:=$crash_top/tests/badsector/.libs/nbdkit-badsector-filter.so}"
export REMAP_FILTER BADSECTOR_FILTER
PYTHON=/usr/bin/python3
CLIENT="$crash_dir/crash-client.py"

# shellcheck source=../functions.sh
source "$crash_top/tests/functions.sh"
set +e                          # the suites count failures themselves

requires nbdkit timeout nbdinfo
$PYTHON -c 'import nbd' 2>/dev/null || skip "python3 nbd module missing"

# Scratch space: /dev/shm when it has 1 GiB free.
if [ -d /dev/shm ] && [ -w /dev/shm ] &&
   [ "$(df -Pk /dev/shm | awk 'NR==2 {print $4}')" -gt 1048576 ]; then
  work=$(mktemp -d /dev/shm/remap-robust.XXXXXXXX)
else
  work=$tmp/work
  mkdir -p "$work"
fi

declare -A _srv_wrapper _srv_pid
_live_pids=""

_live_add () { _live_pids="$_live_pids $1 "; }
_live_del () { _live_pids=${_live_pids/ $1 / }; }

_crash_cleanup ()
{
  local rc=$? p
  for p in $_live_pids; do kill -KILL "$p" 2>/dev/null; done
  for p in $_live_pids; do wait "$p" 2>/dev/null; done
  case $work in
    /dev/shm/remap-robust.*) rm -rf "$work" ;;
  esac
  (exit $rc)
  _cleanup
}
trap _crash_cleanup EXIT

srv_start ()
{
  local name=$1 log=$2 i=0
  shift 2
  SRV_SOCK=$work/$name.sock
  rm -f "$SRV_SOCK" "$SRV_SOCK.pid"
  # The subshell exits normally even when nbdkit is SIGKILLed, so bash
  # prints no "Killed" job notice.
  ( timeout "${SERVER_TIMEOUT:-120}" nbdkit -f -U "$SRV_SOCK" \
      -P "$SRV_SOCK.pid" "$@" >"$log" 2>&1; r=$?; exit $r ) 2>/dev/null &
  SRV_WRAPPER=$!
  _live_add "$SRV_WRAPPER"
  _srv_wrapper[$name]=$SRV_WRAPPER
  _srv_pid[$name]=""
  SRV_PID=""
  # The pidfile is written once the socket is bound.
  while [ ! -s "$SRV_SOCK.pid" ]; do
    if ! kill -0 "$SRV_WRAPPER" 2>/dev/null || [ $i -gt 2000 ]; then
      srv_reap "$name" 100 >/dev/null
      return 1
    fi
    sleep 0.005
    i=$((i + 1))
  done
  SRV_PID=$(cat "$SRV_SOCK.pid")
  _srv_pid[$name]=$SRV_PID
  _live_add "$SRV_PID"
  return 0
}

srv_alive ()
{
  local p=${_srv_pid[$1]}
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

srv_wait_serving ()
{
  local name=$1 deadline=$(( $(now_ms) + ${2:-10000} ))
  local sock=$work/$name.sock
  while [ "$(now_ms)" -lt "$deadline" ]; do
    srv_alive "$name" || { srv_reap "$name" 100 >/dev/null; return 1; }
    timeout 5 nbdinfo --size "nbd+unix:///?socket=$sock" >/dev/null 2>&1 &&
      return 0
    sleep 0.02
  done
  return 2
}

_srv_kill_ms=0
srv_kill ()
{
  _srv_kill_ms=$(now_ms)
  [ -n "${_srv_pid[$1]}" ] && kill -"$2" "${_srv_pid[$1]}" 2>/dev/null
}

srv_reap ()
{
  local name=$1 limit=${2:-10000} start p w i=0
  p=${_srv_pid[$name]}
  w=${_srv_wrapper[$name]}
  start=$(now_ms)
  if [ -n "$p" ]; then
    while kill -0 "$p" 2>/dev/null; do
      if [ $(( $(now_ms) - start )) -ge "$limit" ]; then
        echo "$test_name: nbdkit $name (pid $p) still running after" \
             "$limit ms: SIGKILL" >&2
        kill -KILL "$p" 2>/dev/null
      fi
      sleep 0.005
      i=$((i + 1))
    done
  fi
  SRV_EXIT_MS=$(( $(now_ms) - _srv_kill_ms ))
  if [ -n "$w" ]; then
    wait "$w" 2>/dev/null
    SRV_RC=$?
    _live_del "$w"
  fi
  [ -n "$p" ] && _live_del "$p"
  _srv_pid[$name]=""
  _srv_wrapper[$name]=""
  rm -f "$work/$name.sock"
}

# Background command helpers: run_bg VAR OUT CMD... starts CMD (inside
# timeout, output to OUT) and tracks it; reap_bg PID returns its status.
run_bg ()
{
  local var=$1 out=$2
  shift 2
  ( timeout "${CLIENT_TIMEOUT:-120}" "$@" >"$out" 2>&1; r=$?; exit $r ) 2>/dev/null &
  eval "$var=\$!"
  _live_add "$!"
}

reap_bg ()
{
  local r
  wait "$1" 2>/dev/null
  r=$?
  _live_del "$1"
  return $r
}

# R = a random integer in [0, $1) (no subshell: RANDOM=seed reproduces).
rnd () { R=$(( (RANDOM * 32768 + RANDOM) % $1 )); }
