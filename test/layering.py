#!/usr/bin/python3
"""Check which folders the C sources include from, and list include cycles.

    /usr/bin/python3 test/layering.py            check the rules (exit 1 if broken)
    /usr/bin/python3 test/layering.py --cycles   also list every cycle of modules

A module is a pair x.c + x.h; module A depends on module B when x.c or x.h of
A includes B's header. The rules, from the bottom up:

    lib/       includes lib/ only
    conf/      lib/ and conf/
    sentinel/  lib/, conf/ and sentinel/
    proxy/     lib/, conf/ and proxy/; only proxy/proxy.c, which starts the
               control plane, may include sentinel/engine.h

Run by `make lint`.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = ["lib", "conf", "sentinel", "proxy"]
ALLOWED = {
    "lib": {"lib"},
    "conf": {"lib", "conf"},
    "sentinel": {"lib", "conf", "sentinel"},
    "proxy": {"lib", "conf", "proxy"},
}
EXCEPTIONS = {("proxy/proxy.c", "sentinel/engine.h")}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    for folder in FOLDERS:
        d = os.path.join(ROOT, folder)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield "%s/%s" % (folder, name)


def includes(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return [i for i in INCLUDE.findall(f.read()) if "/" in i and not i.endswith(".inc")]


def module(path):
    """x.c, x.h and the internal header x_int.h make one module."""
    name = os.path.splitext(path)[0]
    return name[:-4] if name.endswith("_int") else name


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    broken = []
    graph = {}
    for path in sources():
        folder = path.split("/")[0]
        for inc in includes(path):
            dep = inc.split("/")[0]
            if dep not in ALLOWED[folder] and (path, inc) not in EXCEPTIONS:
                broken.append("%s includes %s" % (path, inc))
            if module(inc) != module(path):
                graph.setdefault(module(path), set()).add(module(inc))
    for line in broken:
        print("layering: " + line)
    if "--cycles" in sys.argv:
        found = cycles(graph)
        if not found:
            print("no include cycles")
        for comp in found:
            print("cycle of %d modules: %s" % (len(comp), " ".join(comp)))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
