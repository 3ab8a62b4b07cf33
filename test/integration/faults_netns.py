#!/usr/bin/python3
"""Runs one fault scenario against one client path (faults.py) inside the
network namespace it is started in, and prints the result as one JSON line:

    unshare -n -m --propagation private /usr/bin/python3 faults_netns.py SCENARIO PATH

The namespace must be fresh: its loopback is brought up, its local route
changed and its iptables INPUT chain flushed; a scenario with host names
bind-mounts /etc/hosts and /etc/resolv.conf in its mount namespace.
faults.run_isolated() starts it this way; so do test_faults.py and
bench/chaos.py.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import faults  # noqa: E402


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in faults.SCENARIOS or sys.argv[2] not in faults.PATHS:
        sys.exit("usage: faults_netns.py {%s} {%s}" % (",".join(faults.SCENARIOS),
                                                      ",".join(faults.PATHS)))
    faults.netns_setup()
    print(json.dumps(faults.run(sys.argv[1], sys.argv[2])), flush=True)


if __name__ == "__main__":
    main()
