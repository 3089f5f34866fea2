#!/usr/bin/python3
# nbdkit-remap tests: talk to the filter's control socket.
#   ctl.py SOCKET COMMAND...   sends each COMMAND as a line, prints each
#                              JSON reply on its own line.
#   ctl.py SOCKET --get PATH COMMAND  prints one field of the reply, PATH
#                              like counters.remaps, spares.used or
#                              metadata.copies.0.moved (lists by index).
import json
import signal
import socket
import sys


def main():
    sock_path = sys.argv[1]
    args = sys.argv[2:]
    get = None
    if args and args[0] == "--get":
        get = args[1].split(".")
        args = args[2:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(sock_path)
    f = s.makefile("rw")
    for cmd in args:
        f.write(cmd + "\n")
        f.flush()
        line = f.readline()
        if not line:
            sys.exit("ctl.py: no reply to %r" % cmd)
        if get:
            v = json.loads(line)
            for k in get:
                v = v[int(k)] if isinstance(v, list) else v[k]
            print(v)
        else:
            print(line.strip())
    s.close()


# Quietly stop when the reader (grep -q) has seen enough.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
main()
