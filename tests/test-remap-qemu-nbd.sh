#!/usr/bin/env bash
# Proves the deployment that gives per-request errors without a page
# cache: qemu-nbd --cache=none (O_DIRECT) serves the disk image, and
# nbdkit's nbd plugin with this filter sits on top of it.  A failing
# sector below qemu-nbd (qemu's blkdebug driver fails every write to
# it) fails the very write that touches it, so the filter remaps it at
# once and the client's write succeeds; the data reads back after a
# restart.  No flush is needed for the error to be seen.
source "$(dirname "$0")/functions.sh"
set -e
requires qemu-nbd qemu-io

# O_DIRECT needs a file system that supports it: tmpfs does not.  Try
# the temporary directory, then the build tree.
direct_dir=
for d in "$tmp" "$PWD"; do
  if dd if=/dev/zero of="$d/direct-probe" bs=4096 count=1 oflag=direct \
       status=none 2>/dev/null; then
    direct_dir=$d
    rm -f "$d/direct-probe"
    break
  fi
  rm -f "$d/direct-probe"
done
[ -n "$direct_dir" ] || skip "no directory here supports O_DIRECT"
if [ "$direct_dir" != "$tmp" ]; then
  direct_dir=$(mktemp -d "$direct_dir/remap-qemu-nbd.XXXXXXXX")
  cleanup_direct () { rm -rf "$direct_dir"; }
  trap 'cleanup_direct; _cleanup' EXIT
fi

img=$direct_dir/disk.img
qsock=$tmp/qemu-nbd.sock
ctl=$tmp/ctl.sock
ss=4096
truncate -s 64M "$img"

# Sector 100 (4 KiB units; blkdebug counts 512-byte sectors) fails
# every write.
cat >"$tmp/blkdebug.conf" <<EOF
[inject-error]
event = "pwritev"
iotype = "write"
errno = "5"
sector = "$((100 * ss / 512))"
EOF

start_qemu_nbd ()
{
  timeout 300 qemu-nbd -k "$qsock" -e 16 -t --cache=none --image-opts \
    "driver=raw,file.driver=blkdebug,file.config=$tmp/blkdebug.conf,file.image.driver=file,file.image.filename=$img" \
    2>"$tmp/qemu-nbd.log" &
  qpid=$!
  track_pid $qpid
  for _ in $(seq 100); do
    [ -S "$qsock" ] && return 0
    kill -0 $qpid 2>/dev/null || break
    sleep 0.1
  done
  cat "$tmp/qemu-nbd.log" >&2
  fail "qemu-nbd did not start"
}

start_qemu_nbd
# The image is open with O_DIRECT (040000 in the fd's flags).
qemu_nbd=$(pgrep -P $qpid qemu-nbd || echo $qpid)
direct=no
for fd in /proc/"$qemu_nbd"/fd/*; do
  [ "$(readlink "$fd")" = "$img" ] || continue
  flags=$(awk '/^flags:/ { print $2 }' /proc/"$qemu_nbd"/fdinfo/"${fd##*/}")
  (( (8#$flags & 8#40000) != 0 )) && direct=yes
done
[ $direct = yes ] || fail "qemu-nbd did not open the image with O_DIRECT"

start_server sock "$tmp/log" -v --filter="$REMAP_FILTER" \
  nbd socket="$qsock" remap-control="$ctl" remap-plugin-cache=no

# The write across sector 100 succeeds at once (no flush): the error
# came back with the write itself, and the sector went to a spare.
qio "$sock" -c "write -P 0x77 $((98*ss)) $((5*ss))" \
            -c "read -P 0x77 $((98*ss)) $((5*ss))"
ctlcmd list | grep -q '"sector":100,"state":"remapped"' ||
  fail "sector 100 was not remapped: $(ctlcmd list)"
bytes_all "$img" $((99*ss)) $ss 77 || fail "sector 99 is not on the image"
bytes_all "$img" $((100*ss)) $ss 00 || fail "sector 100 was written?"
stop_server "$sock"

# After a restart of nbdkit, the data of sector 100 is there.
start_server sock "$tmp/log2" -v --filter="$REMAP_FILTER" \
  nbd socket="$qsock" remap-control="$ctl" remap-plugin-cache=no
qio "$sock" -c "read -P 0x77 $((98*ss)) $((5*ss))"
stop_server "$sock"
