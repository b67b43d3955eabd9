"""Load an nft ruleset file and print it back as `nft -j list ruleset` JSON.

Runs INSIDE a throwaway network namespace that ``files.py`` creates
(``unshare -n`` / ``unshare -rn``). The caller passes its own namespace's inode
(``--not-netns N``) and the loader refuses to run when it is still in that
namespace, so it can never touch a host's firewall. It is started as a script
(``python loader.py --not-netns N [-I DIR]... FILE``), not as ``-m lbfw.read...``, so
nothing else of lbfw is imported in the namespace (and it imports nothing from this package).

Interface names that `iif`/`oif` use make the load fail in an empty namespace
("Interface does not exist"): the loader creates them (dummy, or a veth pair
where the dummy module is absent) and loads again.

It dies with lbfw: ``--parent PID`` names lbfw, and the loader asks the kernel for SIGKILL
when its parent dies (PR_SET_PDEATHSIG; lbfw also starts it through `setpriv --pdeathsig`).

Exit status: 0 and the JSON on stdout; 1 and nft's error text on stderr; 3 when
it finds itself outside a private namespace; 4 when neither libnftables nor nft is there.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys

_IFACE_ERR = re.compile(
    r"^(?P<path>.+?):(?P<line>\d+):(?P<c1>\d+)-(?P<c2>\d+): Error: Interface does not exist", re.MULTILINE
)
_MAX_ROUNDS = 6


def _in_private_netns(caller_netns: str) -> bool:
    """True when this process's network namespace is not the caller's (``--not-netns``)."""
    try:
        return str(os.stat("/proc/self/ns/net").st_ino) != caller_netns
    except OSError:
        return False  # cannot tell: refuse


class _Lib:
    """libnftables through the `nftables` binding, plus the two calls the binding lacks."""

    def __init__(self) -> None:
        import ctypes

        import nftables  # noqa: F401  (the binding; ImportError -> the nft CLI is used)

        self.nft = nftables.Nftables()
        lib = ctypes.cdll.LoadLibrary("libnftables.so.1")
        self.ctx = self.nft._Nftables__ctx  # the binding keeps its context private
        self.add_include_path = lib.nft_ctx_add_include_path
        self.add_include_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.run_file = lib.nft_run_cmd_from_filename
        self.run_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.run_file.restype = ctypes.c_int
        self.get_err = lib.nft_ctx_get_error_buffer
        self.get_err.argtypes = [ctypes.c_void_p]
        self.get_err.restype = ctypes.c_char_p
        self.get_out = lib.nft_ctx_get_output_buffer
        self.get_out.argtypes = [ctypes.c_void_p]
        self.get_out.restype = ctypes.c_char_p

    def include(self, path: str) -> None:
        self.add_include_path(self.ctx, path.encode())

    def load(self, path: str) -> tuple:
        rc = self.run_file(self.ctx, path.encode())
        self.get_out(self.ctx)  # drain
        err = (self.get_err(self.ctx) or b"").decode(errors="replace")
        return rc, err

    def flush(self) -> None:
        self.nft.cmd("flush ruleset")

    def dump(self) -> tuple:
        self.nft.set_json_output(True)
        rc, out, err = self.nft.cmd("list ruleset")
        self.nft.set_json_output(False)
        return rc, out, err


class _Cli:
    """The nft command, when the binding is not importable here."""

    def __init__(self, includes: list) -> None:
        self.nft = shutil.which("nft") or "/usr/sbin/nft"
        self.includes = includes

    def include(self, path: str) -> None:
        pass

    def load(self, path: str) -> tuple:
        argv = [self.nft]
        for d in self.includes:
            argv += ["-I", d]
        proc = subprocess.run(argv + ["-f", path], capture_output=True, text=True)
        return proc.returncode, proc.stderr

    def flush(self) -> None:
        subprocess.run([self.nft, "flush", "ruleset"], capture_output=True)

    def dump(self) -> tuple:
        proc = subprocess.run([self.nft, "-j", "list", "ruleset"], capture_output=True, text=True)
        return proc.returncode, proc.stdout, proc.stderr


def _missing_interfaces(err: str) -> list:
    """Interface names nft could not find, read from the source at the reported columns."""
    names = []
    cache: dict = {}
    for m in _IFACE_ERR.finditer(err):
        path = m.group("path")
        if path not in cache:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    cache[path] = f.read().split("\n")
            except OSError:
                cache[path] = []
        lines = cache[path]
        idx = int(m.group("line")) - 1
        if 0 <= idx < len(lines):
            token = lines[idx][int(m.group("c1")) - 1 : int(m.group("c2"))].strip().strip('"')
            if token and token not in names:
                names.append(token)
    return names


def _create_interface(name: str, serial: int) -> bool:
    ip = shutil.which("ip") or "/sbin/ip"
    if len(name.encode()) > 15 or "/" in name or not name.isprintable():
        return False
    proc = subprocess.run([ip, "link", "add", name, "type", "dummy"], capture_output=True)
    if proc.returncode == 0:
        return True
    # No dummy module: a veth pair gives the name too.
    proc = subprocess.run(
        [ip, "link", "add", name, "type", "veth", "peer", "name", f"lbfwpeer{serial}"], capture_output=True
    )
    return proc.returncode == 0


def _die_with(parent: int) -> None:
    """Ask the kernel for SIGKILL when lbfw dies (PR_SET_PDEATHSIG), then check that lbfw did not
    die already: a loader must never outlive the lbfw that started it."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    if parent and os.getppid() != parent:
        os._exit(1)


def main(argv: list) -> int:
    includes = []
    files = []
    caller_netns = ""
    parent = 0
    it = iter(argv)
    for arg in it:
        if arg == "-I":
            includes.append(next(it))
        elif arg == "--not-netns":
            caller_netns = next(it)
        elif arg == "--parent":
            parent = int(next(it))
        else:
            files.append(arg)
    _die_with(parent)
    if not caller_netns or not _in_private_netns(caller_netns):
        print("lbfw nft loader: refusing to run outside a private network namespace", file=sys.stderr)
        return 3
    if len(files) != 1:
        print("usage: loader.py [-I DIR]... FILE", file=sys.stderr)
        return 2
    backend: _Lib | _Cli
    try:
        backend = _Lib()
    except (ImportError, OSError, AttributeError):
        if shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft"):
            print(
                "lbfw nft loader: neither libnftables (the nftables Python module) nor the nft command is available",
                file=sys.stderr,
            )
            return 4
        backend = _Cli(includes)
    for d in includes:
        backend.include(d)
    created: list = []
    for _round in range(_MAX_ROUNDS):
        rc, err = backend.load(files[0])
        if rc == 0:
            break
        names = [n for n in _missing_interfaces(err) if n not in created]
        if not names:
            sys.stderr.write(err)
            return 1
        for name in names:
            if not _create_interface(name, len(created)):
                sys.stderr.write(err)
                return 1
            created.append(name)
        backend.flush()  # nft -f is one transaction, but be sure nothing half-loaded stays
    else:
        sys.stderr.write(err)
        return 1
    rc, out, err = backend.dump()
    if rc != 0:
        sys.stderr.write(err)
        return 1
    sys.stdout.write(out)
    if created:
        sys.stderr.write("lbfw: created interfaces " + " ".join(created) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
