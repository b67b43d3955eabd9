"""`lbfw fix` and the boot files, in private network namespaces with a private /etc (a mount
namespace binds a temporary directory over /etc): which file and line loads each fixed table at
boot, the warnings when none does, and `--persist` fixing exactly the file that holds the rule."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
from private_etc import lbfw_with_etc, make_etc, run_with_etc  # tests/kernel is on sys.path

from lbfw.sandbox.netns import Namespace

pytestmark = pytest.mark.kernel

NARROW_V4 = """\
# the boot copy: comments and spacing stay
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -s 127.0.0.1/32 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
"""

FILTER_NFT = """\
# the host's own filter (kept in an included file)
table inet filter {
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tip saddr 127.0.0.1 accept   # loopback
\t\ttcp dport 22 accept
\t}
}
"""

NFTABLES_CONF = """\
#!/usr/sbin/nft -f
# Debian's nftables.conf, with the rules kept in nftables.d
flush ruleset

include "/etc/nftables.d/*.nft"
"""

# fail2ban's table, live but in no boot file: `flush ruleset` in nftables.conf would delete it
BYSTANDER = """\
table inet f2b-table {
\tset addr-set-sshd {
\t\ttype ipv4_addr
\t\telements = { 192.0.2.7 }
\t}
\tchain f2b-chain {
\t\ttype filter hook input priority filter - 1; policy accept;
\t\tip saddr @addr-set-sshd reject
\t}
}
"""


@pytest.fixture
def etcs():
    made = []

    def make(files: dict) -> Path:
        made.append(make_etc(files))
        return made[-1]

    yield make
    for folder in made:
        shutil.rmtree(folder, ignore_errors=True)


def fix_apply(ns, etc, tmp_path, *extra):
    return lbfw_with_etc(ns, etc, "fix", "--apply", "--yes", "--backup-dir", tmp_path / "b", *extra)


def test_rules_v4_is_named_and_persisted(etcs, tmp_path):
    etc = etcs({"iptables/rules.v4": NARROW_V4})
    with Namespace() as ns:
        ns.load_iptables(NARROW_V4, backend="legacy")
        proc = fix_apply(ns, etc, tmp_path, "--persist")
        live = ns.run(["iptables-legacy-save", "-t", "filter"]).stdout
    assert proc.returncode == 0, proc.stderr
    assert "-A INPUT -i lo -j ACCEPT" in live
    assert "legacy ip filter: loaded at boot from /etc/iptables/rules.v4:2 (netfilter-persistent)" in proc.stderr
    assert "persisted: wrote /etc/iptables/rules.v4" in proc.stderr
    fixed = (etc / "iptables/rules.v4").read_text()
    assert fixed == NARROW_V4.replace("-A INPUT -s 127.0.0.1/32 -j ACCEPT", "-A INPUT -i lo -j ACCEPT")
    [bak] = list((etc / "iptables").glob("rules.v4.lbfw-*.bak"))
    assert bak.read_text() == NARROW_V4 and stat.S_IMODE(bak.stat().st_mode) == 0o600


def test_nftables_conf_include_is_fixed_and_the_rest_left_alone(etcs, tmp_path):
    etc = etcs({"nftables.conf": NFTABLES_CONF, "nftables.d/filter.nft": FILTER_NFT})
    with Namespace() as ns:
        ns.load_nft(FILTER_NFT)
        ns.load_nft(BYSTANDER)
        bystander = ns.run(["nft", "-a", "list", "table", "inet", "f2b-table"]).stdout
        dry = lbfw_with_etc(ns, etc, "fix")
        proc = fix_apply(ns, etc, tmp_path, "--persist")
        assert ns.run(["nft", "-a", "list", "table", "inet", "f2b-table"]).stdout == bystander
        assert 'iif "lo" accept' in ns.run(["nft", "list", "table", "inet", "filter"]).stdout
        # the boot files still load with the real loader (checked, not loaded: the kernel stays as it is)
        check = run_with_etc(ns, etc, ["nft", "-c", "-f", "/etc/nftables.conf"])
    assert dry.returncode == 1, dry.stderr
    assert "nftables inet filter: loaded at boot from /etc/nftables.d/filter.nft:2 (nftables.service)" in dry.stderr
    assert "/etc/nftables.d/filter.nft: loaded at boot and has the same mistake" in dry.stderr
    assert "/etc/nftables.conf:3: `flush ruleset`" in dry.stderr and "fail2ban (inet f2b-table)" in dry.stderr
    assert proc.returncode == 0, proc.stderr
    assert "persisted: wrote /etc/nftables.d/filter.nft" in proc.stderr
    assert (etc / "nftables.conf").read_text() == NFTABLES_CONF
    fixed = (etc / "nftables.d/filter.nft").read_text()
    assert fixed == FILTER_NFT.replace("ip saddr 127.0.0.1 accept   # loopback", 'iif "lo" accept   # loopback')
    [bak] = list((etc / "nftables.d").glob("filter.nft.lbfw-*.bak"))
    assert bak.read_text() == FILTER_NFT and stat.S_IMODE(bak.stat().st_mode) == 0o600
    assert check.returncode == 0, check.stderr


def test_fedora_sysconfig_nftables_conf_and_its_include(etcs, tmp_path):
    sysconfig = '# Fedora: nftables.service loads this file\ninclude "/etc/nftables/*.nft"\n'
    etc = etcs(
        {
            "sysconfig/nftables.conf": sysconfig,
            "nftables/main.nft": FILTER_NFT,
            "systemd/system/nftables.service": "[Service]\nExecStart=/sbin/nft -f /etc/sysconfig/nftables.conf\n",
        }
    )
    with Namespace() as ns:
        ns.load_nft(FILTER_NFT)
        dry = lbfw_with_etc(ns, etc, "fix")
        proc = fix_apply(ns, etc, tmp_path, "--persist")
    assert "nftables inet filter: loaded at boot from /etc/nftables/main.nft:2 (nftables.service)" in dry.stderr
    assert "flush ruleset" not in dry.stderr and "not in any boot file" not in dry.stderr
    assert proc.returncode == 0, proc.stderr
    assert "persisted: wrote /etc/nftables/main.nft" in proc.stderr
    assert (etc / "sysconfig/nftables.conf").read_text() == sysconfig
    assert 'iif "lo" accept' in (etc / "nftables/main.nft").read_text()


def test_tables_in_no_boot_file_are_warned_by_name(etcs, tmp_path):
    mine = FILTER_NFT.replace("table inet filter", "table inet mine")
    # nftables.conf exists, but defines another table: `inet mine` was loaded by hand
    etc = etcs({"nftables.conf": "table inet other {\n}\n"})
    with Namespace() as ns:
        ns.load_iptables(NARROW_V4, backend="nft")
        ns.load_nft(mine)
        proc = fix_apply(ns, etc, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (
        "warning: iptables-nft ip filter is not in any boot file: the fix is lost at reboot. "
        "Save it: `netfilter-persistent save`"
    ) in proc.stderr
    assert (
        "warning: nftables inet mine is not in any boot file: the fix is lost at reboot. "
        "Save it: `nft list table inet mine` into /etc/nftables.conf"
    ) in proc.stderr
    assert "it has no narrow loopback rule" not in proc.stderr
    assert (etc / "nftables.conf").read_text() == "table inet other {\n}\n"


def test_persist_writes_nothing_the_real_loader_rejects(etcs, tmp_path):
    """lbfw's reader looks relative includes up beside the file; `nft -f` at boot looks in /etc
    only, so this boot file does not load: the check with the real loader refuses, nothing is written."""
    conf = 'include "main.nft"\n'
    etc = etcs({"sysconfig/nftables.conf": conf, "sysconfig/main.nft": FILTER_NFT})
    with Namespace() as ns:
        ns.load_nft(FILTER_NFT)
        proc = fix_apply(ns, etc, tmp_path, "--persist")
    assert proc.returncode == 0, proc.stderr  # the live fix is done; only the boot file is refused
    assert "loaded at boot from /etc/sysconfig/main.nft:2" in proc.stderr
    assert "/etc/sysconfig/nftables.conf: not persisted: nft -c -f /etc/sysconfig/nftables.conf rejects" in proc.stderr
    assert (etc / "sysconfig/main.nft").read_text() == FILTER_NFT
    assert not list((etc / "sysconfig").glob("*.bak"))
