#!/bin/sh
# nbdkit-remap: install what building, testing and the demo need on
# Debian 12 (bookworm).  Safe to run again: apt-get install leaves
# installed packages alone.
#
# Runs apt-get directly as root, through sudo otherwise.

set -eu

packages="
  nbdkit nbdkit-plugin-dev
  libnbd-bin libnbd-dev python3-libnbd
  libblkid-dev e2fsprogs
  qemu-utils
  check
  autoconf automake libtool pkg-config make gcc perl
  fio
  clang libclang-rt-14-dev
  valgrind
  strace
"

if [ "$(id -u)" -eq 0 ]; then
    as_root=
elif command -v sudo >/dev/null 2>&1; then
    as_root=sudo
else
    echo "$0: run this as root, or install sudo" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive

# shellcheck disable=SC2086 # word splitting of $as_root and $packages is wanted
$as_root env DEBIAN_FRONTEND=noninteractive apt-get update
# shellcheck disable=SC2086
$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y $packages
