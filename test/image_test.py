#!/usr/bin/python3
"""make image-test: build the container image from the Dockerfile and run it
against a local Sentinel layout.

It builds with docker where a docker engine answers, otherwise with buildah
(Debian package), over Debian 12 base images made locally with debootstrap
(also a Debian package) when they are not there already, so that no image
registry is needed. The image is then checked as a user would meet it:

- its configuration: a non-root user, a HEALTHCHECK, the exposed ports;
- started without arguments, it exits and says which flags to give;
- started with --master-name and --sentinel, it serves SET and GET on
  port 6380 of every interface, in front of 1 master, 1 replica and 3
  Sentinels, and follows the master the Sentinels name;
- its health check command answers 0 against the running proxy, and 1 with
  nothing listening.

With buildah the run happens in network and PID namespaces of its own
(unshare, as root), so the image's 0.0.0.0 listeners are reachable on its
loopback only and whatever the run starts ends with it; a docker engine has
its own idea of the host's network, so with docker the proxy is told to
listen on 127.0.0.1 instead, and its container is named and removed.

Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian),
SP_IMAGE (default localhost/sentinel-proxy:test).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "integration"))

IMAGE = os.environ.get("SP_IMAGE", "localhost/sentinel-proxy:test")
BASES = {"BASE": "localhost/sentinel-proxy-base:bookworm",
         "RUNTIME_BASE": "localhost/sentinel-proxy-base:bookworm"}
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def say(msg):
    print("image-test: " + msg, flush=True)


def run(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, **kw)


def builder():
    if shutil.which("docker") and run("docker", "info", check=False,
                                      stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL).returncode == 0:
        return "docker"
    if shutil.which("buildah"):
        return "buildah"
    sys.exit("image-test: needs docker, or buildah and debootstrap "
             "(apt-get install buildah debootstrap)")


def buildah_base():
    """A Debian 12 base image from debootstrap, unless one is there."""
    name = BASES["BASE"]
    if run("buildah", "inspect", "--type", "image", name, check=False,
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        return
    if not shutil.which("debootstrap"):
        sys.exit("image-test: no base image and no debootstrap (apt-get install debootstrap)")
    rootfs = tempfile.mkdtemp(prefix="sp-rootfs-", dir="/var/tmp")
    try:
        say("making a Debian 12 base with debootstrap (%s)" % MIRROR)
        run("debootstrap", "--variant=minbase", "bookworm", rootfs, MIRROR,
            stdout=subprocess.DEVNULL)
        ctr = run("buildah", "from", "scratch", capture_output=True, text=True).stdout.strip()
        try:
            mnt = run("buildah", "mount", ctr, capture_output=True, text=True).stdout.strip()
            run("cp", "-a", rootfs + "/.", mnt)
            run("buildah", "umount", ctr)
            run("buildah", "config", "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", ctr)
            run("buildah", "commit", "--quiet", ctr, name, stdout=subprocess.DEVNULL)
        finally:
            run("buildah", "rm", ctr, check=False, stdout=subprocess.DEVNULL)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def build(tool):
    say("building %s with %s" % (IMAGE, tool))
    if tool == "docker":
        run("docker", "build", "-t", IMAGE, ROOT)
        return
    buildah_base()
    args = []
    for k, v in BASES.items():
        args += ["--build-arg", "%s=%s" % (k, v)]
    run("buildah", "bud", "--format", "docker", "--layers", "--network", "host",
        "--isolation", "chroot", *args, "-t", IMAGE, ROOT)


def image_config(tool):
    if tool == "docker":
        out = run("docker", "image", "inspect", IMAGE, capture_output=True, text=True).stdout
        return json.loads(out)[0]["Config"]
    out = run("buildah", "inspect", "--type", "image", IMAGE, capture_output=True,
              text=True).stdout
    return json.loads(out)["Docker"]["config"]


class Container:
    """Runs commands in the image, on the namespace's network."""

    def __init__(self, tool, entrypoint):
        self.tool = tool
        self.entrypoint = entrypoint
        self.ctr = None
        if tool == "buildah":
            self.ctr = run("buildah", "from", "--quiet", IMAGE, capture_output=True,
                           text=True).stdout.strip()

    def argv(self, args, entrypoint=True, name=None):
        cmd = (self.entrypoint if entrypoint else []) + list(args)
        if self.tool == "docker":
            named = ["--name", name] if name else []
            return ["docker", "run", "--rm", "--network", "host"] + named + [
                "--entrypoint", cmd[0], IMAGE] + cmd[1:]
        return ["buildah", "run", "--network", "host", "--isolation", "chroot", self.ctr,
                "--"] + cmd

    def run(self, args, entrypoint=True, timeout=30):
        return subprocess.run(self.argv(args, entrypoint), capture_output=True, text=True,
                              timeout=timeout)

    def start(self, args, log):
        self.name = "sp-image-test-%d" % os.getpid()
        return subprocess.Popen(self.argv(args, name=self.name), stdout=log,
                                stderr=subprocess.STDOUT)

    def remove(self):
        if self.tool == "docker":
            run("docker", "rm", "-f", getattr(self, "name", ""), check=False,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self.ctr is not None:
            # In the PID namespace of this run only (see main): nothing else
            # on the machine matches.
            run("pkill", "-f", "^/usr/local/bin/sentinel-proxy -c /etc/sentinel-proxy", check=False)
            time.sleep(0.2)
            run("buildah", "rm", self.ctr, check=False, stdout=subprocess.DEVNULL)


def check(cond, what, detail=""):
    if not cond:
        sys.exit("image-test: FAILED: %s%s" % (what, ("\n" + detail) if detail else ""))
    say("ok: " + what)


def run_checks(tool):
    import redis
    from harness import Cluster, make_workdir, port_open, topology, wait_for

    if tool == "buildah":
        run("ip", "link", "set", "lo", "up")
    cfg = image_config(tool)
    user = cfg.get("User") or ""
    check(user not in ("", "0", "root") and not user.startswith(("0:", "root:")),
          "runs as a non-root user (%s)" % user)
    hc = (cfg.get("Healthcheck") or {}).get("Test") or []
    check("--healthcheck" in " ".join(hc), "has a HEALTHCHECK (%s)" % " ".join(hc))
    check("6380/tcp" in (cfg.get("ExposedPorts") or {}), "exposes 6380")
    entrypoint = cfg.get("Entrypoint") or []
    c = Container(tool, entrypoint)
    workdir = make_workdir("sp-image-")
    cluster = None
    proc = None
    try:
        r = c.run([])
        check(r.returncode != 0 and "--master-name NAME --sentinel HOST:PORT" in r.stderr,
              "without arguments it exits and says what to give", r.stdout + r.stderr)
        r = c.run(["id", "-u"], entrypoint=False)
        check(r.stdout.strip() not in ("", "0"), "the process is not root (uid %s)"
              % r.stdout.strip(), r.stderr)
        r = c.run(["/usr/local/bin/sentinel-proxy", "--healthcheck", "127.0.0.1:9121"],
                  entrypoint=False)
        check(r.returncode == 1, "the health check fails with nothing listening", r.stdout)
        cluster = Cluster(workdir, replicas=1, sentinels=3).start()
        args = ["--master-name", cluster.name]
        if tool == "docker":
            args += ["--listen", "127.0.0.1:6380", "--set", "admin.listen=127.0.0.1:9121"]
        for s in cluster.sentinels:
            args += ["--sentinel", "127.0.0.1:%d" % s.port]
        log = open(os.path.join(workdir, "image-proxy.log"), "w")
        proc = c.start(args, log)
        logtext = lambda: open(log.name).read()  # noqa: E731
        wait_for(lambda: port_open(6380) or proc.poll() is not None, timeout=60,
                 what="the image's proxy on 0.0.0.0:6380")
        check(proc.poll() is None, "the image's proxy runs", logtext())
        cl = redis.Redis(port=6380, socket_timeout=10)
        wait_for(lambda: cl.set("image-test", "1"), timeout=30, what="a SET through the image")
        check(cl.get("image-test") == b"1", "SET and GET through the image")
        master = topology(cl)["master"]
        check(master.startswith("127.0.0.1:%d" % cluster.master.port),
              "it follows the Sentinels' master (%s)" % master)
        r = c.run(["/usr/local/bin/sentinel-proxy", "--healthcheck", "127.0.0.1:9121/healthz"],
                  entrypoint=False)
        check(r.returncode == 0, "the health check passes (%s)" % r.stdout.strip(), r.stderr)
        r = c.run(["/usr/local/bin/sentinel-proxy", "--healthcheck", "127.0.0.1:9121/readyz"],
                  entrypoint=False)
        check(r.returncode == 0, "/readyz is ready (%s)" % r.stdout.strip(), r.stderr)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        c.remove()
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    say("passed")


def main():
    tool = builder()
    if os.environ.get("SP_IMAGE_NETNS") == "1":
        run_checks(tool)
        return
    if os.geteuid() != 0:
        sys.exit("image-test: run as root (image builds and a network namespace)")
    build(tool)
    if tool == "docker":
        run_checks(tool)
        return
    env = dict(os.environ, SP_IMAGE_NETNS="1")
    # A network namespace (the image's 0.0.0.0 is its loopback) and a PID
    # namespace (what the run starts ends with it, and is all it can see).
    sys.exit(subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc",
                             sys.executable, os.path.abspath(__file__)], env=env).returncode)


if __name__ == "__main__":
    main()
