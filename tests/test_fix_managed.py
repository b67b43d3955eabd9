"""The seam for changes made through a manager (fix/managed.py): what a ManagerChange may name and
run, and what a backup entry must be before a revert trusts it."""

from __future__ import annotations

import pytest

from lbfw.fix.managed import ManagerChange, SavedFile


def test_a_change_that_writes_is_followed_by_the_managers_own_reload():
    change = ManagerChange(
        "fail2ban", ("/etc/fail2ban/jail.local",), (), (("/etc/fail2ban/jail.local", "[DEFAULT]\n"),), "LB008"
    )
    assert change.steps() == [("fail2ban-client", "reload")]


def test_commands_alone_run_as_given_without_a_reload():
    delete = ("ufw", "delete", "allow", "from", "127.0.0.1")
    change = ManagerChange("ufw", ("/etc/ufw/user.rules",), (delete,), (), "LB002")
    assert change.steps() == [delete]


@pytest.mark.parametrize(
    "manager, files, commands, writes",
    [
        ("iptables", ("/etc/ufw/user.rules",), (), ()),  # not a manager lbfw knows
        ("ufw", ("/etc/shadow",), (), ()),  # outside the manager's directory
        ("ufw", ("/etc/ufw/../shadow",), (), ()),  # not a normalised path
        ("ufw", ("/etc/ufw/user.rules",), (("sh", "-c", "true"),), ()),  # another program than ufw
        ("fail2ban", (), (), (("/etc/fail2ban/jail.local", ""),)),  # written but not backed up
    ],
)
def test_a_change_outside_its_manager_is_refused(manager, files, commands, writes):
    with pytest.raises(ValueError):
        ManagerChange(manager, files, commands, writes, "why")


def _entry(**changes) -> dict:
    saved = SavedFile("ufw", "/etc/ufw/user.rules", "managed-1-user.rules", True, 3, "0" * 64, 0o640, 0, 0)
    return dict(saved.to_json(), **changes)


def test_a_backup_entry_round_trips_and_names_no_command():
    item = _entry()
    assert SavedFile.from_json(item).to_json() == item
    assert set(item) == {"manager", "path", "file", "exists", "bytes", "sha256", "mode", "uid", "gid"}
    assert "reload" not in str(item.values())


@pytest.mark.parametrize(
    "bad",
    [
        {"manager": "sh"},
        {"path": "/etc/passwd"},
        {"path": "/etc/ufw/../passwd"},
        {"file": "../../etc/passwd"},
        {"file": "legacy-ip-filter.rules"},
    ],
)
def test_a_backup_entry_lbfw_did_not_write_is_refused(bad):
    with pytest.raises(ValueError):
        SavedFile.from_json(_entry(**bad))


def test_saved_bytes_must_match_size_and_digest():
    import hashlib

    saved = SavedFile.from_json(_entry(bytes=3, sha256=hashlib.sha256(b"abc").hexdigest()))
    assert saved.matches(b"abc") and not saved.matches(b"abd") and not saved.matches(b"ab")
