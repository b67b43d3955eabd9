"""Fixed files, proven by the kernel: every buggy example, once fixed with `--write`, loads
with the real tools in a private namespace and delivers every loopback flow."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from lbfw.analyze.flows import default_flows
from lbfw.fix.files import file_fixes, write_fixed
from lbfw.fix.plan import plan_fixes
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources
from lbfw.sandbox.netns import Namespace
from lbfw.sandbox.traffic import observe

pytestmark = pytest.mark.kernel


def must_fire(path) -> set:
    m = re.search(r"^# must-fire:(.*)$", path.read_text(), re.M)
    return {w.split(":")[0] for w in (m.group(1).split() if m else [])}


def buggy_examples(examples_dir) -> list:
    return [
        p
        for p in sorted(examples_dir.iterdir())
        if p.suffix in (".rules", ".v4", ".v6", ".nft") and must_fire(p) & {"LB002", "LB003"}
    ]


def lbfw(*args, **options):
    """`lbfw fix ARGS` in this process (the command's own run()): (exit code, stdout, stderr)."""
    import io

    from lbfw.commands.fix import run

    out, err = io.StringIO(), io.StringIO()
    sources = [a for a in args if not a.startswith("--") and a != "fix"]
    flags = {a[2:].replace("-", "_"): True for a in args if a.startswith("--") and a != "--style"}
    if "--style" in args:
        flags["style"] = args[args.index("--style") + 1]
        sources.remove(flags["style"])
    code = run(sources=sources, stdout=out, stderr=err, **flags)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def load(ns, path):
    text = path.read_text()
    if path.suffix == ".nft":
        ns.load_nft(text)
    else:
        ns.load_iptables(text, family="ip6" if path.suffix == ".v6" else "ip", backend="legacy")


def test_every_buggy_example_once_written_delivers_every_loopback_flow(examples_dir, tmp_path):
    examples = buggy_examples(examples_dir)
    assert len(examples) >= 8
    fixed = 0
    for example in examples:
        copy = tmp_path / example.name
        shutil.copy(example, copy)
        ruleset = read_sources([str(copy)])
        findings, _ = audit_ruleset(ruleset)
        plan = plan_fixes(ruleset, findings)
        if not plan.edits:
            # nothing to write: only deliberate (note) or manager-owned findings, each refused with a reason
            assert plan.refusals and all(
                f.severity == "note" or f.owner for f in findings if f.check in ("LB002", "LB003")
            ), example.name
            continue
        write_fixed(file_fixes(plan))
        ruleset = read_sources([str(copy)])
        findings, _ = audit_ruleset(ruleset)
        assert not [f for f in findings if f.check in ("LB002", "LB003")], example.name
        flows = default_flows(ruleset)
        with Namespace() as ns:
            load(ns, copy)
            seen = observe(ns, flows, timeout=0.5)
        blocked = [f.label() for f, v in zip(flows, seen) if v != "delivered"]
        if "LB001" in must_fire(example) or "LB003" in must_fire(example):
            assert not blocked, (example.name, blocked)
        fixed += 1
    assert fixed >= 8


def test_dry_run_verify_shows_the_repaired_flows(examples_dir):
    proc = lbfw("fix", str(examples_dir / "input-narrow-accept.rules"), "--dry-run", "--verify")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("--- a/")
    m = re.search(r"(\d+) flows, (\d+) repaired by the fix, (\d+) broken by it, (\d+) still blocked", proc.stderr)
    assert m, proc.stderr
    assert int(m.group(2)) > 0 and m.group(3) == "0" and m.group(4) == "0"
    assert "repaired: tcp 127.0.0.2 -> 127.0.0.1" in proc.stderr


def test_nft_named_set_gains_flags_interval_and_loads(examples_dir, tmp_path):
    copy = tmp_path / "set.nft"
    shutil.copy(examples_dir / "nft-named-set.nft", copy)
    assert lbfw("fix", str(copy), "--write").returncode == 0
    text = copy.read_text()
    assert "flags interval" in text and "127.0.0.0/8, 192.0.2.10" in text
    with Namespace() as ns:
        ns.load_nft(text)
        listed = ns.run(["nft", "list", "set", "inet", "filter", "trusted"]).stdout
    assert "127.0.0.0/8" in listed


def test_define_used_elsewhere_is_not_widened(tmp_path):
    path = tmp_path / "def.nft"
    path.write_text(
        "define LOCAL = 127.0.0.1\n"
        "table inet filter {\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority 0; policy drop;\n"
        "\t\tip saddr $LOCAL accept\n"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority 0; policy accept;\n"
        "\t\tip daddr $LOCAL tcp dport 9050 meta skuid 0 accept\n"
        "\t}\n"
        "}\n"
    )
    proc = lbfw("fix", str(path), "--style", "range")
    assert "-define LOCAL" not in proc.stdout  # the define keeps its other use
    assert "+\t\tip saddr 127.0.0.0/8 accept" in proc.stdout
    assert "the define stays as it is" in proc.stderr
    assert lbfw("fix", str(path), "--write", "--style", "range").returncode in (0, 1)
    with Namespace() as ns:
        ns.load_nft(path.read_text())


def test_corpus_ugent_fixed_delivers_every_loopback_flow(corpus_dir):
    """The 2010-era hand-written ruleset (iptables 1.3.5 spelling) that lbfw exists for."""
    path = corpus_dir / "configs_ugent__iptables-save"
    ruleset = read_sources([str(path)])
    findings, _ = audit_ruleset(ruleset)
    [fix] = file_fixes(plan_fixes(ruleset, findings))
    flows = default_flows(ruleset)

    def loadable(text: str) -> str:
        # iptables 1.8 rejects 1.3's `-d ! X` (the fix keeps the file's spelling): modern negation to load
        return re.sub(r"(-[sd]|-i|-o|-p) ! (\S+)", r"! \1 \2", text)

    with Namespace() as ns:
        ns.load_iptables(loadable(fix.old), backend="legacy")
        before = observe(ns, flows, timeout=0.5)
    with Namespace() as ns:
        ns.load_iptables(loadable(fix.new), backend="legacy")
        after = observe(ns, flows, timeout=0.5)
    assert "blocked" in before
    assert [f.label() for f, v in zip(flows, after) if v != "delivered"] == []
