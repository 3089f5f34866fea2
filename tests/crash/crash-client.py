#!/usr/bin/python3
# nbdkit-remap crash tests: the workload client and its checker.
#
#   crash-client.py write  --socket S --journal J [--threads 4]
#                          [--duration SECONDS] [--seed N] [--sectors N]
#   crash-client.py verify --socket S --journal J [--settle] [--sectors N]
#   crash-client.py selftest --socket S --journal J --image IMG
#
# write: several threads, each with its own connection (nbd.NBD
# handle), write self-describing 4 KiB blocks to the sectors each one
# owns (a contiguous slice of the first --sectors sectors), with
# random flushes and FUA writes.  A block is 8 pieces of 512 bytes (the
# smallest remap sector), each
#
#   0  magic "RMPCRSH1"    8  u64 sector     16 u64 version
#   24 u16 piece (0-7)     26 u16 thread id  28 u32 CRC-32 of bytes
#   32 random payload                            0..27 and 32..511
#
# so that a write torn at a sector boundary (legitimate for a write
# that was never acknowledged: the filter splits a request at remapped
# sectors) shows as pieces of different versions, never as a checksum
# failure.
#
# A sector's versions count up from 1 for the life of the journal.
# The journal (text, appended, fsync'd after every durability record)
# says, per sector:
#
#   G NSECTORS BLOCK   geometry (first line)
#   S SECTOR VERSION   the write of VERSION was *started* (written
#                      before the request is sent)
#   A SECTOR VERSION   the write of VERSION was acknowledged
#   D SECTOR VERSION   VERSION was covered by a completed FUA write or
#                      a completed flush (issued after the write was
#                      acknowledged; with multi-conn a flush on any
#                      connection covers every connection's writes)
#   B SECTOR HI BASE[,BASE...]
#                      left by verify --settle: what was read back
#                      (one version, or eight, one per piece, for a
#                      torn block), and every other version up to HI
#                      was lost (never made durable, gone with the
#                      crash)
#
# The client survives the server's death: a request that fails because
# the connection is gone, or with ESHUTDOWN (the server is stopping),
# ends that thread quietly.  Any other error is
# counted and makes the exit status 3.
#
# verify: reads every sector of the export and checks, piece by piece,
# that
#   - no piece holds another sector's number or sits at another
#     piece's place, and no checksum fails;
#   - anything that is not all zeros is one of our pieces (magic);
#   - the version read is at least the newest durable one, at most the
#     newest one started, and never a version already seen lost;
#   - sectors the workload never wrote read as zeros;
#   - with --atomic-blocks (remap sector size 4096), no block is torn;
#   - with --strict-acked, no acknowledged write is lost even if no
#     flush covered it: right when the server was SIGKILLed (the page
#     cache of the file plugin survives a process, and the filter makes
#     a remap durable before it acknowledges the write that needed it),
#     not after a power loss.  Without it such losses are only counted.
# Exit status 0 if all is well, 1 on any violation (the first few are
# printed), 2 if it could not run.  --settle then rewrites the journal
# compactly (B lines) so that the next run continues from what is on
# the disk now.
#
# selftest: damages the image (under a running server, on sectors that
# are not remapped) and the journal's claims, one fault at a time, and
# checks that verify's checker reports each one.
import argparse
import errno
import os
import random
import struct
import sys
import threading
import time
import zlib

import nbd

MAGIC = b"RMPCRSH1"
BLOCK = 4096
PIECE = 512
NP = BLOCK // PIECE
HDR = struct.Struct("<8sQQHHI")     # magic, sector, version, piece, tid, crc


def piece_crc(buf):
    return zlib.crc32(buf[32:PIECE], zlib.crc32(buf[:28])) & 0xffffffff


def make_block(sector, version, tid):
    out = []
    payload = os.urandom(NP * (PIECE - HDR.size))
    for i in range(NP):
        body = payload[i * (PIECE - HDR.size):(i + 1) * (PIECE - HDR.size)]
        head = struct.pack("<8sQQHH", MAGIC, sector, version, i, tid)
        crc = zlib.crc32(body, zlib.crc32(head)) & 0xffffffff
        out.append(head + struct.pack("<I", crc) + body)
    return b"".join(out)


class SectorState:
    __slots__ = ("started", "acked", "durable", "base", "lost_hi")

    def __init__(self):
        self.started = 0
        self.acked = 0
        self.durable = 0
        self.base = [0] * NP         # per piece, as last read back
        self.lost_hi = 0


def load_journal(path, nsectors=None):
    """Returns (nsectors, [SectorState]).  Cuts off a torn last line."""
    states = None
    n = nsectors
    if not os.path.exists(path):
        if n is None:
            raise SystemExit("crash-client: no journal %s" % path)
        return n, [SectorState() for _ in range(n)]
    with open(path, "rb") as f:
        data = f.read()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        if not raw:
            continue
        f = raw.split()
        kind = f[0]
        if kind == b"G":
            jn, jb = int(f[1]), int(f[2])
            if jb != BLOCK:
                raise SystemExit("crash-client: journal block size %d" % jb)
            if n is not None and jn != n:
                raise SystemExit("crash-client: journal is for %d sectors, "
                                 "asked for %d" % (jn, n))
            n = jn
            states = [SectorState() for _ in range(n)]
            continue
        if states is None:
            raise SystemExit("crash-client: %s: no G line first" % path)
        s = int(f[1])
        st = states[s]
        if kind == b"S":
            st.started = max(st.started, int(f[2]))
        elif kind == b"D":
            st.durable = max(st.durable, int(f[2]))
        elif kind == b"A":
            st.acked = max(st.acked, int(f[2]))
        elif kind == b"B":
            st.lost_hi = st.started = int(f[2])
            bases = [int(x) for x in f[3].split(b",")]
            st.base = bases * NP if len(bases) == 1 else bases
            st.durable = st.acked = min(st.base)
        else:
            raise SystemExit("crash-client: %s line %d: bad record %r"
                             % (path, lineno, raw))
    if states is None:
        if n is None:
            raise SystemExit("crash-client: empty journal %s" % path)
        states = [SectorState() for _ in range(n)]
    return n, states


class Journal:
    def __init__(self, path, nsectors, fresh):
        self.lock = threading.Lock()
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if fresh:
            self.append(["G %d %d" % (nsectors, BLOCK)], sync=True)

    def append(self, lines, sync=False):
        data = ("\n".join(lines) + "\n").encode()
        with self.lock:
            os.write(self.fd, data)
            if sync:
                os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


def is_gone(h):
    try:
        return h.aio_is_dead() or h.aio_is_closed()
    except nbd.Error:
        return True


class Workload:
    def __init__(self, args, nsectors, states, journal, multi_conn):
        self.args = args
        self.n = nsectors
        self.states = states
        self.journal = journal
        self.multi_conn = multi_conn
        self.lock = threading.Lock()
        # Acknowledged writes, in order, per durability domain (all
        # connections with multi-conn, else one per thread).
        self.acked = {}
        self.flushed_upto = {}
        self.stats = {"writes": 0, "blocks": 0, "fua": 0, "flushes": 0,
                      "io_errors": 0, "threads_cut": 0, "connect_fail": 0}
        self.errors = []
        self.deadline = time.monotonic() + args.duration

    def domain(self, tid):
        return 0 if self.multi_conn else tid + 1

    def bump(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def record_acked(self, tid, pairs):
        d = self.domain(tid)
        with self.lock:
            self.acked.setdefault(d, []).extend(pairs)

    def mark_durable(self, pairs):
        with self.lock:
            lines = []
            for s, v in pairs:
                if v > self.states[s].durable:
                    self.states[s].durable = v
                    lines.append("D %d %d" % (s, v))
            if lines:
                self.journal.append(lines, sync=True)

    def run_thread(self, tid, lo, hi, sock):
        rng = random.Random(self.args.seed * 1000 + tid)
        h = nbd.NBD()
        try:
            h.connect_unix(sock)
        except nbd.Error:
            self.bump("connect_fail")
            return
        d = self.domain(tid)
        try:
            while time.monotonic() < self.deadline:
                r = rng.random()
                if r < self.args.p_flush:
                    with self.lock:
                        upto = len(self.acked.get(d, []))
                    h.flush()
                    self.bump("flushes")
                    with self.lock:
                        lst = self.acked.get(d, [])
                        start = self.flushed_upto.get(d, 0)
                        pairs = lst[start:upto] if upto > start else []
                        self.flushed_upto[d] = max(start, upto)
                    self.mark_durable(pairs)
                    continue
                nblk = 1 if rng.random() < 0.7 else rng.randint(2, 8)
                first = rng.randrange(lo, hi)
                nblk = min(nblk, hi - first)
                fua = rng.random() < self.args.p_fua
                pairs = []
                for s in range(first, first + nblk):
                    st = self.states[s]
                    st.started += 1
                    pairs.append((s, st.started))
                # Started before it is sent: a write may reach the disk
                # even if its reply never comes.
                self.journal.append(["S %d %d" % p for p in pairs])
                buf = b"".join(make_block(s, v, tid) for s, v in pairs)
                h.pwrite(buf, first * BLOCK,
                         nbd.CMD_FLAG_FUA if fua else 0)
                self.journal.append(["A %d %d" % p for p in pairs])
                self.bump("writes")
                self.bump("blocks", nblk)
                if fua:
                    self.bump("fua")
                    self.mark_durable(pairs)
                self.record_acked(tid, pairs)
        except nbd.Error as e:
            # ESHUTDOWN: nbdkit is stopping and refuses new requests.
            # (The binding gives errno as a name, older ones a number.)
            if is_gone(h) or e.errno in ("ESHUTDOWN", errno.ESHUTDOWN):
                self.bump("threads_cut")
            else:
                self.bump("io_errors")
                with self.lock:
                    self.errors.append("thread %d: %s" % (tid, e))
        finally:
            try:
                h.shutdown()
            except nbd.Error:
                pass
            del h


def cmd_write(args):
    # The harness may kill the server at any moment, this first short
    # connection included: losing it is the same as finding no server.
    h = nbd.NBD()
    try:
        h.connect_unix(args.socket)
        size = h.get_size()
        multi_conn = h.can_multi_conn()
        h.shutdown()
    except nbd.Error as e:
        print("write: cannot connect: %s (server gone)" % e)
        return 0 if args.allow_no_server else 2
    del h
    nsectors = args.sectors or size // BLOCK
    nsectors = min(nsectors, size // BLOCK)
    fresh = not os.path.exists(args.journal)
    nsectors, states = load_journal(args.journal, nsectors)
    journal = Journal(args.journal, nsectors, fresh)
    wl = Workload(args, nsectors, states, journal, multi_conn)
    threads = []
    per = nsectors // args.threads
    for t in range(args.threads):
        lo = t * per
        hi = nsectors if t == args.threads - 1 else lo + per
        th = threading.Thread(target=wl.run_thread,
                              args=(t, lo, hi, args.socket))
        th.start()
        threads.append(th)
    for th in threads:
        th.join()
    journal.close()
    st = wl.stats
    print("write: threads=%d multi_conn=%d writes=%d blocks=%d fua=%d "
          "flushes=%d cut_by_server_exit=%d connect_failures=%d io_errors=%d"
          % (args.threads, multi_conn, st["writes"], st["blocks"], st["fua"],
             st["flushes"], st["threads_cut"], st["connect_fail"],
             st["io_errors"]))
    for e in wl.errors[:5]:
        print("write: ERROR while the server was up: %s" % e)
    return 3 if st["io_errors"] else 0


def check(h, nsectors, states, settle=False, atomic=False, strict=False):
    """Reads the whole export; returns (counts, problems, versions),
    versions[s] being the list of the pieces' versions."""
    size = h.get_size()
    total = size // BLOCK
    problems = []
    counts = {"sectors": total, "written": 0, "durable": 0,
              "at_durable": 0, "newer": 0, "unflushed_lost": 0, "zero": 0,
              "torn": 0, "acked_lost": 0}
    versions = {}
    if total < nsectors:
        problems.append("export has %d sectors, journal %d"
                        % (total, nsectors))
        return counts, problems, versions
    zero = bytes(PIECE)
    chunk = 256
    for first in range(0, total, chunk):
        n = min(chunk, total - first)
        try:
            data = h.pread(n * BLOCK, first * BLOCK)
        except nbd.Error as e:
            problems.append("read of sectors %d-%d failed: %s"
                            % (first, first + n - 1, e))
            continue
        for i in range(n):
            s = first + i
            vs = []
            bad = False
            for k in range(NP):
                off = i * BLOCK + k * PIECE
                b = data[off:off + PIECE]
                if b == zero:
                    vs.append(0)
                    continue
                magic, bsec, bver, bpiece, tid, crc = HDR.unpack_from(b)
                if magic != MAGIC:
                    problems.append("sector %d piece %d: not a workload "
                                    "block (first bytes %s)"
                                    % (s, k, b[:16].hex()))
                elif bsec != s or bpiece != k:
                    problems.append("sector %d piece %d holds piece %d of "
                                    "the block of sector %d (version %d)"
                                    % (s, k, bpiece, bsec, bver))
                elif piece_crc(b) != crc:
                    problems.append("sector %d piece %d version %d: "
                                    "checksum mismatch" % (s, k, bver))
                else:
                    vs.append(bver)
                    continue
                bad = True
                break
            if bad:
                continue
            if s >= nsectors:
                if any(vs):
                    problems.append("sector %d was never written but holds "
                                    "version %d" % (s, max(vs)))
                continue
            versions[s] = vs
            st = states[s]
            torn = len(set(vs)) > 1
            if torn:
                counts["torn"] += 1
                if atomic:
                    problems.append("sector %d is torn (piece versions %s) "
                                    "although its remap sector is the whole "
                                    "block" % (s, vs))
            if st.started:
                counts["written"] += 1
            if st.durable:
                counts["durable"] += 1
            if not any(vs):
                counts["zero"] += 1
            for k, v in enumerate(vs):
                if v > st.started:
                    problems.append("sector %d piece %d holds version %d, "
                                    "but only %d were ever written"
                                    % (s, k, v, st.started))
                    break
                if v < st.durable:
                    problems.append("sector %d piece %d lost a durable "
                                    "write: version %d was flushed/FUA, read "
                                    "version %d" % (s, k, st.durable, v))
                    break
                if v < st.acked and strict:
                    problems.append("sector %d piece %d lost an acknowledged "
                                    "write: version %d was acknowledged, "
                                    "read version %d (no flush covered it, "
                                    "but the server was only killed)"
                                    % (s, k, st.acked, v))
                    break
                if v <= st.lost_hi and v != st.base[k]:
                    problems.append("sector %d piece %d holds version %d, "
                                    "which had been lost in an earlier crash "
                                    "(read back %d then)"
                                    % (s, k, v, st.base[k]))
                    break
            else:
                top = max(vs)
                if st.durable and top == st.durable:
                    counts["at_durable"] += 1
                elif top > st.durable:
                    counts["newer"] += 1
                if min(vs) < st.started:
                    counts["unflushed_lost"] += 1
                if min(vs) < st.acked:
                    counts["acked_lost"] += 1
            if settle:
                st.base = list(vs)
                st.durable = st.acked = min(vs)
                st.lost_hi = st.started
    return counts, problems, versions


def write_settled(path, nsectors, states):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("G %d %d\n" % (nsectors, BLOCK))
        for s, st in enumerate(states):
            if st.started:
                if len(set(st.base)) == 1:
                    bases = str(st.base[0])
                else:
                    bases = ",".join(str(b) for b in st.base)
                f.write("B %d %d %s\n" % (s, st.lost_hi, bases))
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def cmd_verify(args):
    h = nbd.NBD()
    try:
        h.connect_unix(args.socket)
    except nbd.Error as e:
        print("verify: cannot connect: %s" % e)
        return 2
    # Without a journal the workload never started writing (the server
    # was killed first): with --sectors, that is a journal of nothing.
    n = None
    if args.sectors:
        n = min(args.sectors, h.get_size() // BLOCK)
    nsectors, states = load_journal(args.journal, n)
    counts, problems, _ = check(h, nsectors, states, args.settle,
                                args.atomic_blocks, args.strict_acked)
    h.shutdown()
    del h
    print("verify: sectors=%d written=%d flushed=%d at_flushed_version=%d "
          "newer_than_flushed=%d unflushed_writes_not_kept=%d "
          "acked_not_kept=%d torn_unflushed=%d zero=%d problems=%d"
          % (counts["sectors"], counts["written"], counts["durable"],
             counts["at_durable"], counts["newer"], counts["unflushed_lost"],
             counts["acked_lost"], counts["torn"], counts["zero"],
             len(problems)))
    for p in problems[:10]:
        print("verify: FAIL: %s" % p)
    if problems:
        return 1
    if args.settle:
        write_settled(args.journal, nsectors, states)
    return 0


def cmd_selftest(args):
    """Proves the checker can fail: damages the image under a running
    server (sectors that are not remapped, so the export shows the
    file's bytes) and the journal's claims, one fault at a time, and
    expects each to be reported."""
    nsectors, states = load_journal(args.journal)
    h = nbd.NBD()
    h.connect_unix(args.socket)
    counts, problems, versions = check(h, nsectors, states, strict=True)
    if problems:
        print("selftest: the undamaged image already fails: %s" % problems[0])
        return 1
    # Written sectors whose export bytes are the file's bytes.
    plain = []
    with open(args.image, "r+b") as f:
        for s, vs in sorted(versions.items()):
            if len(set(vs)) != 1 or vs[0] == 0:
                continue
            f.seek(s * BLOCK)
            raw = f.read(BLOCK)
            if raw == h.pread(BLOCK, s * BLOCK):
                plain.append(s)
            if len(plain) == 3:
                break
        if len(plain) < 3:
            print("selftest: not enough plain written sectors")
            return 1
        s1, s2, s3 = plain
        faults = []

        def expect(name, needle, fn, undo):
            fn()
            _, probs, _ = check(h, nsectors, states, strict=True)
            undo()
            ok = any(needle in p for p in probs)
            faults.append((name, ok, probs[:1]))

        f.seek(s1 * BLOCK)
        orig1 = f.read(BLOCK)
        f.seek(s3 * BLOCK)
        orig3 = f.read(BLOCK)

        def put(s, data):
            f.seek(s * BLOCK)
            f.write(data)
            f.flush()

        flipped = bytearray(orig1)
        flipped[BLOCK - 1] ^= 0xff
        expect("flipped payload byte", "checksum mismatch",
               lambda: put(s1, bytes(flipped)), lambda: put(s1, orig1))
        f.seek(s2 * BLOCK)
        orig2 = f.read(BLOCK)
        expect("another sector's block", "of the block of sector",
               lambda: put(s3, orig2), lambda: put(s3, orig3))
        st = states[s1]
        saved = (st.started, st.acked, st.durable, list(st.base), st.lost_hi)

        def restore():
            (st.started, st.acked, st.durable, st.base,
             st.lost_hi) = saved

        v1 = versions[s1][0]

        def newer_durable():
            st.started = st.durable = v1 + 1
        expect("flushed version lost", "lost a durable write",
               newer_durable, restore)

        def acked_lost():
            st.started = st.acked = v1 + 1
        expect("acknowledged write lost", "lost an acknowledged",
               acked_lost, restore)

        def resurrect():
            st.base, st.lost_hi = [v1 - 1] * NP, v1
        expect("lost version back", "had been lost", resurrect, restore)

        def future():
            st.durable = st.acked = st.lost_hi = 0
            st.base = [0] * NP
            st.started = v1 - 1
        expect("version never written", "were ever written", future, restore)
    h.shutdown()
    bad = [x for x in faults if not x[1]]
    for name, ok, probs in faults:
        print("selftest: %-26s %s" % (name, "detected" if ok else
                                       "NOT DETECTED %s" % probs))
    print("selftest: %d of %d injected faults detected"
          % (len(faults) - len(bad), len(faults)))
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["write", "verify", "selftest"])
    p.add_argument("--image", help="selftest: the image file")
    p.add_argument("--socket", required=True)
    p.add_argument("--journal", required=True)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--duration", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--sectors", type=int, default=0,
                   help="sectors the workload uses (default: all)")
    p.add_argument("--p-flush", type=float, default=0.04)
    p.add_argument("--p-fua", type=float, default=0.10)
    p.add_argument("--settle", action="store_true")
    p.add_argument("--strict-acked", action="store_true",
                   help="verify: losing an acknowledged write is a failure")
    p.add_argument("--atomic-blocks", action="store_true",
                   help="verify: a torn block is a failure")
    p.add_argument("--allow-no-server", action="store_true")
    args = p.parse_args()
    if args.mode == "write":
        return cmd_write(args)
    if args.mode == "selftest":
        return cmd_selftest(args)
    return cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
