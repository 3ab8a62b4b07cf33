"""make install and what it installs: the binary, the man page, the
hardened systemd unit and the example configuration (kept when present)."""
import os
import re
import shutil
import subprocess

import pytest

from harness import PROXY_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make(*args):
    out = subprocess.run(["make", "-s", "-C", ROOT, "BIN=" + PROXY_BIN] + list(args),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_install_and_uninstall(tmp_path):
    dest = str(tmp_path)
    make("install", "DESTDIR=" + dest, "PREFIX=/usr")
    binary = dest + "/usr/bin/sentinel-proxy"
    unit = dest + "/usr/lib/systemd/system/sentinel-proxy.service"
    page = dest + "/usr/share/man/man8/sentinel-proxy.8"
    conf = dest + "/etc/sentinel-proxy/sentinel-proxy.yaml"
    for path, mode in ((binary, 0o755), (unit, 0o644), (page, 0o644), (conf, 0o644)):
        assert os.stat(path).st_mode & 0o777 == mode, path
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    assert version.split()[-1] in open(page).readline()  # .TH carries the same version
    text = open(unit).read()
    assert "@BINDIR@" not in text
    assert "ExecStart=/usr/bin/sentinel-proxy -c /etc/sentinel-proxy/sentinel-proxy.yaml" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    for hardening in ("DynamicUser=yes", "NoNewPrivileges=yes", "ProtectSystem=strict",
                      "CapabilityBoundingSet=\n"):
        assert hardening in text
    # The installed example passes -t with the installed binary.
    assert subprocess.run([binary, "-t", "-c", conf], capture_output=True).returncode == 0
    # A second install keeps the operator's configuration.
    with open(conf, "a") as f:
        f.write("# mine\n")
    assert "keeping" in make("install", "DESTDIR=" + dest, "PREFIX=/usr")
    assert open(conf).read().endswith("# mine\n")
    make("uninstall", "DESTDIR=" + dest, "PREFIX=/usr")
    assert not any(os.path.exists(p) for p in (binary, unit, page))
    assert os.path.exists(conf)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not there")
def test_unit_verifies(tmp_path):
    """systemd's own check, with the unit pointing at the built binary and
    the man page it names findable."""
    dest = str(tmp_path)
    make("install", "DESTDIR=" + dest, "PREFIX=/opt/sp")
    unit = os.path.join(dest, "sentinel-proxy.service")
    with open(os.path.join(ROOT, "conf", "sentinel-proxy.service")) as f:
        text = f.read().replace("@BINDIR@", os.path.dirname(PROXY_BIN))
    with open(unit, "w") as f:
        f.write(text)
    env = dict(os.environ, MANPATH=dest + "/opt/sp/share/man")
    out = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff not there")
def test_man_page_is_clean_and_complete():
    page = os.path.join(ROOT, "conf", "sentinel-proxy.8")
    out = subprocess.run(["groff", "-man", "-ww", "-z", page], capture_output=True, text=True)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    text = open(page).read().replace("\\-", "-")
    helptext = subprocess.run([PROXY_BIN, "--help"], capture_output=True, text=True).stdout
    for flag in set(re.findall(r"(--[a-z][a-z-]+)", helptext)):
        assert flag in text, "the man page lacks " + flag
