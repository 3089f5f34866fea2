#!/usr/bin/python3
# nbdkit-remap tests: checks a Prometheus text exposition file, the
# way the node_exporter textfile collector would read it, and prints
# "name value" (labels folded into the name) for each sample.
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(r"^(%s)(\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\""
                    r"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\})? (\S+)$" % NAME)


def main():
    helped, typed = set(), {}
    text = open(sys.argv[1]).read()
    if not text.endswith("\n"):
        sys.exit("promcheck: the file does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            name = line.split()[2]
            if name in helped:
                sys.exit("promcheck: line %d: second HELP for %s" % (n, name))
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if kind not in ("counter", "gauge", "histogram", "summary",
                            "untyped"):
                sys.exit("promcheck: line %d: bad type %s" % (n, kind))
            typed[name] = kind
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            if not m:
                sys.exit("promcheck: line %d: not a sample: %r" % (n, line))
            name, labels, value = m.group(1), m.group(2) or "", m.group(4)
            if name not in typed or name not in helped:
                sys.exit("promcheck: line %d: %s has no HELP/TYPE" % (n, name))
            float(value)
            if typed[name] == "counter" and not name.endswith("_total"):
                sys.exit("promcheck: line %d: counter %s lacks _total"
                         % (n, name))
            print("%s%s %s" % (name, labels, value))


main()
