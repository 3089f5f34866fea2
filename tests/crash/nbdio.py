#!/usr/bin/python3
# nbdkit-remap robustness suites: small NBD and control-socket client
# for the shell tests, one process per call.
#
#   nbdio.py write SOCK OFFSET LEN BYTE [fua]
#       writes LEN bytes of BYTE (hex) at OFFSET; status 0 if the write
#       was acknowledged, 1 if it failed (the message is printed).
#   nbdio.py pattern SOCK OFFSET LEN
#       prints the byte (two hex digits) that fills the range, or
#       "mixed:<first 16 bytes>" or "error:<message>".
#   nbdio.py patterns SOCK LEN OFFSET...
#       the same for several ranges, one word per line.
#   nbdio.py ctl SOCK COMMAND
#       one control-socket command; prints the JSON reply.
#   nbdio.py probe SOCK CTLSOCK LEN OFFSET...
#       "patterns" then "remapped" in one process.
#   nbdio.py remapped SOCK
#       prints every table entry (control "list"): "SECTOR:STATE", or
#       "retired@SPARE" for a retired spare; first waits (up to 5 s)
#       for the first NBD client to have loaded the table.
#   nbdio.py durable SOCK
#       "remapped", then the control command "sync": what it printed is
#       durable once this exits with status 0.
import json
import socket
import sys
import time

import nbd


def connect(sock):
    h = nbd.NBD()
    h.connect_unix(sock)
    return h


def fill_of(data):
    if data and data.count(data[0]) == len(data):
        return "%02x" % data[0]
    return "mixed:" + data[:16].hex()


def pattern(h, off, length):
    try:
        return fill_of(h.pread(length, off))
    except nbd.Error as e:
        return "error:" + str(e).replace(" ", "_")


def ctl(sock, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(25)
    s.connect(sock)
    s.sendall(line.encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(65536)
        if not d:
            break
        buf += d
    s.close()
    return buf.decode()


def main():
    cmd, sock = sys.argv[1], sys.argv[2]
    a = sys.argv[3:]
    if cmd == "write":
        off, length, byte = int(a[0]), int(a[1]), int(a[2], 16)
        flags = nbd.CMD_FLAG_FUA if len(a) > 3 and a[3] == "fua" else 0
        try:
            h = connect(sock)
            h.pwrite(bytes([byte]) * length, off, flags)
        except nbd.Error as e:
            print("write failed: %s" % e)
            return 1
        try:
            h.shutdown()
        except nbd.Error:
            pass
        return 0
    if cmd == "pattern":
        h = connect(sock)
        print(pattern(h, int(a[0]), int(a[1])))
        h.shutdown()
        return 0
    if cmd == "patterns":
        h = connect(sock)
        length = int(a[0])
        for off in a[1:]:
            print(pattern(h, int(off), length))
        h.shutdown()
        return 0
    if cmd == "ctl":
        sys.stdout.write(ctl(sock, " ".join(a)))
        return 0
    if cmd == "probe":
        try:
            h = connect(sock)
        except nbd.Error as e:
            print("error:cannot_connect:" + str(e).replace(" ", "_"))
            return 1
        length = int(a[1])
        for off in a[2:]:
            print(pattern(h, int(off), length))
        h.shutdown()
        sys.stdout.flush()
        sock = a[0]
        cmd = "remapped"
    durable = cmd == "durable"
    if durable:
        cmd = "remapped"
    if cmd == "remapped":
        # The table is loaded when the first NBD client connects; until
        # then the control socket says so ("waiting").
        for _ in range(250):
            if json.loads(ctl(sock, "status")).get("state") != "waiting":
                break
            time.sleep(0.02)
        start = 0
        out = []
        while True:
            r = json.loads(ctl(sock, "list %d 10000" % start))
            if not r.get("ok"):
                print("error: %s" % r)
                return 1
            for e in r["entries"]:
                if "sector" in e:
                    out.append("%d:%s" % (e["sector"], e["state"]))
                else:
                    out.append("retired@%d" % e["spare"])
            if r["next"] is None:
                break
            start = r["next"]
        if durable:
            r = json.loads(ctl(sock, "sync"))
            if not r.get("ok"):
                print("error: sync: %s" % r)
                return 1
        print("\n".join(out))
        return 0
    print("usage: see the top of nbdio.py", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
