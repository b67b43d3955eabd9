"""`lbfw fix FILE`: diffs that git apply and patch take, --write that keeps everything else."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lbfw.errors import InputError
from lbfw.fix.files import file_fixes, render_diff, write_fixed
from lbfw.fix.plan import plan_fixes
from lbfw.pipeline import audit_ruleset
from lbfw.read import read_sources

NARROW = """\
# Hand-written rules: loopback by source 127.0.0.1 alone.
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]

# keep ssh open
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 127.0.0.1 -m comment --comment "local 127.0.0.1 services" -j ACCEPT
-A INPUT   ! -i lo -s 127.0.0.1/255.255.255.255   -j DROP
COMMIT
"""


def lbfw(*args, cwd=None, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "lbfw", *args], cwd=cwd, capture_output=True, text=True, input=stdin, timeout=120
    )


def plan_for(path: str, style: str = "interface"):
    ruleset = read_sources([path])
    findings, _ = audit_ruleset(ruleset)
    return plan_fixes(ruleset, findings, style)


@pytest.fixture
def narrow(tmp_path) -> Path:
    path = tmp_path / "rules.v4"
    path.write_text(NARROW)
    return path


def test_dry_run_is_the_default_and_changes_nothing(narrow):
    proc = lbfw("fix", "rules.v4", cwd=narrow.parent)
    assert proc.returncode == 1, proc.stderr
    assert narrow.read_text() == NARROW
    assert proc.stdout.startswith("--- a/rules.v4\n+++ b/rules.v4\n")
    assert '-A INPUT -i lo -m comment --comment "local 127.0.0.1 services" -j ACCEPT' in proc.stdout
    assert "\x1b[" not in proc.stdout  # piped: no colour
    assert "Fix safety" in proc.stderr and "non-loopback addresses" in proc.stderr


@pytest.mark.parametrize("tool", ["git", "patch"])
def test_dry_run_diff_applies_with_git_apply_and_patch(narrow, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    diff = lbfw("fix", "rules.v4", cwd=narrow.parent).stdout
    expected = narrow.parent / "expected"
    expected.mkdir()
    shutil.copy(narrow, expected / "rules.v4")
    assert lbfw("fix", "rules.v4", "--write", cwd=expected).returncode == 0
    argv = ["git", "apply", "-"] if tool == "git" else ["patch", "-p1", "--quiet"]
    proc = subprocess.run(argv, cwd=narrow.parent, input=diff, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert narrow.read_bytes() == (expected / "rules.v4").read_bytes()


def test_diff_in_a_subdirectory_applies_from_where_lbfw_ran(tmp_path):
    sub = tmp_path / "etc" / "iptables"
    sub.mkdir(parents=True)
    (sub / "rules.v4").write_text(NARROW)
    diff = lbfw("fix", "etc/iptables/rules.v4", cwd=tmp_path).stdout
    assert "--- a/etc/iptables/rules.v4" in diff
    proc = subprocess.run(["patch", "-p1", "--quiet"], cwd=tmp_path, input=diff, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1/255.255.255.255" not in (sub / "rules.v4").read_text()


def test_diff_of_an_absolute_path_applies_from_the_root(narrow):
    # `lbfw fix /etc/iptables/rules.v4`: `a//etc/...` is taken by neither tool, `a/etc/...` from /
    diff = lbfw("fix", str(narrow)).stdout
    name = str(narrow).lstrip("/")
    assert diff.startswith(f"--- a/{name}\n+++ b/{name}\n")
    # check only: nothing under / is written
    for argv in (["git", "apply", "--check", "-"], ["patch", "-p1", "--dry-run", "--quiet"]):
        proc = subprocess.run(argv, cwd="/", input=diff, capture_output=True, text=True)
        assert proc.returncode == 0, (argv, proc.stderr)
    assert narrow.read_text() == NARROW


def test_write_keeps_comments_blank_lines_and_every_other_line(narrow):
    os.chmod(narrow, 0o640)
    proc = lbfw("fix", str(narrow), "--write")
    assert proc.returncode == 0, proc.stderr
    old, new = NARROW.splitlines(), narrow.read_text().splitlines()
    assert len(old) == len(new)
    changed = [i for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert changed == [8, 9]
    assert new[8] == '-A INPUT -i lo -m comment --comment "local 127.0.0.1 services" -j ACCEPT'
    assert new[9] == "-A INPUT   ! -i lo -s 127.0.0.0/255.0.0.0   -j DROP"
    assert stat.S_IMODE(os.stat(narrow).st_mode) == 0o640
    backups = list(narrow.parent.glob("rules.v4.lbfw-*.bak"))
    assert len(backups) == 1
    assert backups[0].read_text() == NARROW
    assert stat.S_IMODE(os.stat(backups[0]).st_mode) == 0o600
    # nothing else left behind in the directory (no temporary file)
    assert sorted(p.name for p in narrow.parent.iterdir()) == sorted(["rules.v4", backups[0].name])


def test_write_then_reaudit_is_clean(narrow):
    assert lbfw("fix", str(narrow), "--write").returncode == 0
    findings, _ = audit_ruleset(read_sources([str(narrow)]))
    assert not [f for f in findings if f.check in ("LB002", "LB003")]
    again = lbfw("fix", str(narrow))
    assert again.returncode == 0 and again.stdout == ""


def test_write_refuses_a_file_changed_since_it_was_read(narrow):
    plan = plan_for(str(narrow))
    fixes = file_fixes(plan)
    assert fixes
    narrow.write_text(NARROW + "# edited by someone else\n")
    with pytest.raises(InputError, match="changed since lbfw read it"):
        write_fixed(fixes)
    assert narrow.read_text() == NARROW + "# edited by someone else\n"
    assert not list(narrow.parent.glob("*.bak"))


def test_crlf_and_missing_final_newline_survive(tmp_path):
    path = tmp_path / "win.rules"
    data = NARROW.replace("\n", "\r\n").rstrip("\r\n")  # CRLF, no newline at the end
    path.write_bytes(data.encode())
    diff = subprocess.run(
        [sys.executable, "-m", "lbfw", "fix", "win.rules"], cwd=tmp_path, capture_output=True
    ).stdout  # bytes: the CRs must reach git as written
    assert b"\r\n" in diff
    target = tmp_path / "copy"
    target.mkdir()
    shutil.copy(path, target / "win.rules")
    proc = subprocess.run(["git", "apply", "-"], cwd=target, input=diff, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert lbfw("fix", "win.rules", "--write", cwd=tmp_path).returncode == 0
    fixed = path.read_bytes()
    assert fixed == (target / "win.rules").read_bytes()
    assert fixed.count(b"\r\n") == data.count("\r\n") and not fixed.endswith(b"\n")
    assert b"-A INPUT -i lo -m comment" in fixed


def test_render_diff_marks_a_missing_final_newline():
    diff = render_diff("x", "a\nb", "a\nc")
    assert diff.endswith("-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n")
    assert render_diff("x", "same\n", "same\n") == ""


def test_style_range_writes_the_block(narrow):
    proc = lbfw("fix", str(narrow), "--style", "range")
    assert '+-A INPUT -s 127.0.0.0/8 -m comment --comment "local 127.0.0.1 services" -j ACCEPT' in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["fix", "-", "--write"], "standard input"),
        (["fix", "rules.v4", "--apply"], "takes no SOURCE"),
        (["fix", "rules.v4", "--style", "wide"], "--style"),
        (["fix", "rules.v4", "--write", "--apply"], "exclude each other"),
        (["fix", "rules.v4", "--persist"], "--persist"),
        (["fix", "missing.rules"], "missing.rules"),
    ],
)
def test_usage_errors_exit_2_without_traceback(narrow, args, message):
    proc = lbfw(*args, cwd=narrow.parent)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert narrow.read_text() == NARROW


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    path = tmp_path / "bad.rules"
    path.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -s 127.0.0.1 -j ACCEPT\n")  # no COMMIT
    before = path.read_bytes()
    proc = lbfw("fix", str(path), "--write")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]


def test_owner_rules_are_refused_with_where_to_change(narrow):
    plan = plan_for(str(narrow))
    ruleset = read_sources([str(narrow)])
    findings, _ = audit_ruleset(ruleset)
    for f in findings:
        f.owner = "docker"
    plan = plan_fixes(ruleset, findings)
    assert not plan.edits
    assert plan.refusals and all("docker run -p" in r.why for r in plan.refusals)


def test_every_buggy_iptables_example_is_fixed_and_reaudits_clean(examples_dir, tmp_path):
    fixed_any = 0
    for example in sorted(examples_dir.glob("*.rules")) + sorted(examples_dir.glob("*.v6")):
        head = example.read_text().split("*", 1)[0]
        if "must-fire:" not in head or not any(
            c in head.split("must-fire:")[1].split("\n")[0] for c in ("LB002", "LB003")
        ):
            continue
        copy = tmp_path / example.name
        shutil.copy(example, copy)
        plan = plan_for(str(copy))
        if not plan.edits:  # deliberate ones (notes) are refused, with a reason
            assert plan.refusals, example.name
            continue
        write_fixed(file_fixes(plan))
        findings, _ = audit_ruleset(read_sources([str(copy)]))
        left = [f for f in findings if f.check in ("LB002", "LB003") and f.severity != "note"]
        assert not left, (example.name, [f.message for f in left])
        fixed_any += 1
    assert fixed_any >= 6


def test_corpus_ugent_old_format_is_fixed_in_its_own_spelling(corpus_dir, tmp_path):
    src = corpus_dir / "configs_ugent__iptables-save"
    plan = plan_for(str(src))
    fixes = file_fixes(plan)
    assert len(fixes) == 1
    new = fixes[0].new
    assert "-A INPUT -i lo -j ACCEPT" in new  # was -s 127.0.0.1 -d 127.0.0.1
    assert "-A INPUT -i lo -p tcp -m tcp --dport 25 -j ACCEPT" in new
    old_lines, new_lines = fixes[0].old.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    assert sum(a != b for a, b in zip(old_lines, new_lines)) == len([e for e in plan.edits])
    # the diff applies to a copy with patch -p1
    work = tmp_path / "w"
    work.mkdir()
    shutil.copy(src, work / "ugent.rules")
    diff = render_diff("ugent.rules", fixes[0].old, new)
    proc = subprocess.run(["patch", "-p1", "--quiet"], cwd=work, input=diff, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (work / "ugent.rules").read_text() == new


def test_corpus_kornwall_keeps_the_interface_and_drops_the_address(corpus_dir):
    ruleset = read_sources([str(corpus_dir / "config_kornwall__iptables-save")])
    findings, _ = audit_ruleset(ruleset)
    for f in findings:  # how sure the check is does not matter here: the rewrite does
        f.severity = "warning"
    plan = plan_fixes(ruleset, findings)
    new = {e.old: e.new for e in plan.edits}
    assert new.get("-A INPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -i lo -j ACCEPT") == "-A INPUT -i lo -j ACCEPT"
    assert new.get("-A OUTPUT -s 127.0.0.1/32 -d 127.0.0.1/32 -o lo -j ACCEPT") == "-A OUTPUT -o lo -j ACCEPT"


def test_colour_only_on_a_terminal(narrow):
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lbfw", "fix", "rules.v4"],
            cwd=narrow.parent,
            stdout=slave,
            stderr=subprocess.PIPE,
            timeout=120,
            env={**os.environ, "TERM": "xterm"},
        )
        os.close(slave)
        data = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        os.close(master)
    assert proc.returncode == 1
    assert b"\x1b[31m-" in data and b"\x1b[32m+" in data
    env = {**os.environ, "NO_COLOR": "1"}
    piped = subprocess.run(
        [sys.executable, "-m", "lbfw", "fix", "rules.v4"], cwd=narrow.parent, capture_output=True, env=env, timeout=120
    )
    assert b"\x1b[" not in piped.stdout


def test_fix_safety_is_printed_next_to_each_edit(narrow):
    proc = lbfw("fix", str(narrow), "--style", "range")
    lines = proc.stderr.splitlines()
    edits = [i for i, line in enumerate(lines) if ": LB00" in line and "not fixed" not in line]
    assert len(edits) == 2
    assert all(lines[i + 1].startswith("  Fix safety:") for i in edits)


@pytest.mark.parametrize("case", ["no file", "found"])
def test_persistence_after_a_live_fix(examples_dir, tmp_path, case):
    """What `lbfw fix` says about the boot-time file of a fixed table (--persist, and the files
    found under /etc, are tested in tests/kernel/test_fix_boot.py with a private /etc)."""
    import io

    from lbfw.backends import TableRef
    from lbfw.fix.boot import BootFile, persistence
    from lbfw.model import Ruleset

    original = (examples_dir / "input-narrow-accept.rules").read_text()
    boot = tmp_path / "rules.v4"
    boots = []
    if case != "no file":
        boot.write_text(original)
        boots = [BootFile(str(boot), "ip", "netfilter-persistent")]
    err = io.StringIO()
    persistence([TableRef("legacy", "ip", "filter")], Ruleset(tables=[]), "interface", False, err, boots=boots)
    text = err.getvalue()
    if case == "no file":
        assert "legacy ip filter is not in any boot file: the fix is lost at reboot" in text
        assert "netfilter-persistent save" in text
    else:
        assert f"legacy ip filter: loaded at boot from {boot}:5 (netfilter-persistent)" in text
        assert f"{boot}: loaded at boot and has the same mistake: the live fix is lost at reboot" in text
        assert boot.read_text() == original


def test_every_corpus_ruleset_fixes_cleanly(corpus_dir, tmp_path):
    """Real-world rulesets: every edit applies, every other line stays, and the fixed text
    re-audits without a LB002/LB003 warning (notes, deliberate by the check's judgement, stay)."""
    total = 0
    for path in sorted(corpus_dir.iterdir()):
        if path.name == "README.md":
            continue
        plan = plan_for(str(path))
        for refusal in plan.refusals:
            assert refusal.why and refusal.where.startswith(str(path)), refusal
        fixes = file_fixes(plan)
        if not fixes:
            continue
        [fix] = fixes
        old_lines, new_lines = fix.old.split("\n"), fix.new.split("\n")
        assert len(old_lines) == len(new_lines)
        assert sum(a != b for a, b in zip(old_lines, new_lines)) == len(plan.edits)
        copy = tmp_path / path.name
        copy.write_text(fix.new)
        findings, _ = audit_ruleset(read_sources([str(copy)]))
        assert not [f for f in findings if f.check in ("LB002", "LB003") and f.severity != "note"], path.name
        total += len(plan.edits)
    assert total >= 7


def test_write_keeps_the_owner_and_writes_through_a_symlink(tmp_path):
    real_dir = tmp_path / "real"
    real_dir.mkdir()
    real = real_dir / "rules.v4"
    real.write_text(NARROW)
    os.chown(real, 65534, 65534)
    link = tmp_path / "rules.v4"
    link.symlink_to(real)
    plan = plan_for(str(link))
    write_fixed(file_fixes(plan))
    assert link.is_symlink()  # the link stays a link
    st = os.stat(real)
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert "-A INPUT -i lo -m comment" in real.read_text()
    [bak] = list(tmp_path.glob("rules.v4.lbfw-*.bak"))
    assert bak.read_text() == NARROW
