#!/usr/bin/env bash
# nbdkit-remap demo: a disk with a sector that can no longer be
# written, kept working by the remap filter.
#
# Run from the source tree after `make`:  scripts/demo.sh
# It needs nbdkit, qemu-io and od, and takes a few seconds.  It exits
# non-zero if any step does not go as described.

set -euo pipefail

export PATH=/usr/bin:$PATH
export LC_ALL=C

top=$(cd "$(dirname "$0")/.." && pwd)
remap=$top/filter/.libs/nbdkit-remap-filter.so
badsector=$top/tests/badsector/.libs/nbdkit-badsector-filter.so

SECTOR=4096               # the filter's default remapping unit
BAD=100                   # the sector that fails writes
PATTERN=0x5a
first=$((BAD - 1))        # the demo writes sectors 99..101
offset=$((first * SECTOR))
length=$((3 * SECTOR))

step=0
say ()  { printf '\n== %d. %s\n' "$((step += 1))" "$*"; }
info () { printf '   %s\n' "$*"; }
die ()  { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

for f in "$remap" "$badsector"; do
    [ -f "$f" ] || die "$f is missing: run 'make' first"
done
for p in nbdkit nbdinfo qemu-io od timeout; do
    command -v "$p" >/dev/null || die "$p is not installed (see scripts/debian-setup.sh)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/remap-demo.XXXXXX")
img=$tmp/disk.img
list=$tmp/bad-sectors.txt
sock=$tmp/nbd.sock
log=$tmp/nbdkit.log
server_pid=

# Stops the server by its PIDs: nbdkit's own (from its pid file) and
# that of the `timeout` wrapping it.
stop_server () {
    local rc=0
    [ -n "$server_pid" ] || return 0
    if [ -s "$tmp/nbdkit.pid" ]; then
        kill "$(cat "$tmp/nbdkit.pid")" 2>/dev/null || true
    fi
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" || rc=$?
    server_pid=
    rm -f "$tmp/nbdkit.pid" "$sock"
    return $rc
}

cleanup () {
    local rc=$?
    stop_server || true
    if [ $rc -ne 0 ] && [ -s "$log" ]; then
        echo "--- last lines of the nbdkit log:" >&2
        tail -n 20 "$log" >&2
    fi
    rm -rf "$tmp"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server ARGS...: nbdkit in the foreground of a background job,
# verbose, on a Unix socket, killed by `timeout` if the demo hangs.
# Returns once the filter has loaded or formatted its table, which it
# does when the first client connects (only then does nbdkit say
# whether the server is read-only): nbdinfo is that client.
start_server () {
    : > "$log"
    timeout 30 nbdkit -f -v -U "$sock" -P "$tmp/nbdkit.pid" "$@" 2>"$log" &
    server_pid=$!
    for _ in $(seq 100); do
        if [ -S "$sock" ] &&
           timeout 10 nbdinfo --size "nbd+unix:///?socket=$sock" \
             >/dev/null 2>&1 &&
           grep -qE 'remap: (formatted|loaded) ' "$log"; then
            return 0
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.05
    done
    grep -E 'error' "$log" >&2 || true
    die "nbdkit did not start"
}

uri="nbd+unix:///?socket=$sock"

# ---------------------------------------------------------------------

say "A blank 64 MiB disk image, with sector $BAD gone bad"
truncate -s 64M "$img"
cat > "$list" <<EOF
# Sectors of $SECTOR bytes that the bad-sector test filter breaks.
write $BAD
EOF
info "image:      $img (sparse, $(stat -c %s "$img") bytes)"
info "bad sector: every write touching sector $BAD (bytes $((BAD * SECTOR))..$(((BAD + 1) * SECTOR - 1))) fails with EIO"

say "Serve it: client -> remap filter -> bad-sector filter -> file"
start_server --filter="$remap" --filter="$badsector" \
    file "$img" badsector-file="$list"
info "$(grep -oE 'remap: formatted .*' "$log")"
info "(internal mode: the spares and the table sit at the end of the image)"

say "Write pattern $PATTERN over sectors $first..$((BAD + 1)) with qemu-io"
out=$(qemu-io -f raw "$uri" -c "write -P $PATTERN $offset $length") ||
    die "the write failed, but the filter should have remapped sector $BAD"
info "qemu-io: $(head -n1 <<<"$out")"
info "The client saw success.  Below the filter, the disk said:"
grep -m1 -oE 'injected write error at sector [0-9]+' "$log" |
    sed 's/^/     /' || die "the bad sector never failed"
info "and the filter answered:"
grep -oE 'remap: sector [0-9]+ remapped to spare [0-9]+' "$log" |
    sed 's/^/     /' || die "no 'remapped to spare' line in the log"
n=$(grep -c 'remapped to spare' "$log")
[ "$n" -eq 1 ] || die "expected exactly one remap, the log shows $n"
grep -qE "remap: sector $BAD remapped to spare " "$log" ||
    die "the remap is not for sector $BAD"

say "Read it back through the same server (sector $BAD still cannot be written)"
qemu-io -f raw -r "$uri" -c "read -P $PATTERN $offset $length" >/dev/null ||
    die "the data did not read back"
info "sectors $first..$((BAD + 1)) all read back as $PATTERN"

say "Stop the server and look at the table on disk"
stop_server || die "nbdkit did not shut down cleanly"
size=$(stat -c %s "$img")
hdr_b=$((size / SECTOR * SECTOR - 4096))         # header B: the last 4096 bytes
magic=$(od -An -c -N12 -j "$hdr_b" "$img" | tr -d ' ')
[ "$magic" = "nbdkit-remap" ] || die "no remap header at byte $hdr_b"
entries=$(od -An -t u4 -N4 -j $((hdr_b + 152)) "$img" | tr -d ' ')
generation=$(od -An -t u8 -N8 -j $((hdr_b + 144)) "$img" | tr -d ' ')
spare0=$(od -An -t u8 -N8 -j $((hdr_b + 64)) "$img" | tr -d ' ')
info "header B at byte $hdr_b: generation $generation"
[ "$entries" -eq 1 ] || die "the table holds $entries entries, expected 1"
echo "   remap table: 1 entry"
# The bad sector itself never took the data; spare 0 did.
orig=$(od -An -t x1 -N1 -j $((BAD * SECTOR)) "$img" | tr -d ' ')
spare=$(od -An -t x1 -N1 -j "$spare0" "$img" | tr -d ' ')
info "sector $BAD of the image holds 0x$orig; spare 0 (byte $spare0) holds 0x$spare"
[ "0x$spare" = "$PATTERN" ] || die "spare 0 does not hold the data"

say "Restart WITHOUT the bad-sector filter: the table is loaded from disk"
start_server --filter="$remap" file "$img"
info "$(grep -oE 'remap: loaded .*' "$log")"
qemu-io -f raw -r "$uri" -c "read -P $PATTERN $offset $length" >/dev/null ||
    die "after the restart the data did not read back"
info "sectors $first..$((BAD + 1)) read back as $PATTERN: sector $BAD comes from its spare"
stop_server || die "nbdkit did not shut down cleanly"

printf '\ndemo OK: a failed write was remapped, made durable, and survived a restart.\n'
