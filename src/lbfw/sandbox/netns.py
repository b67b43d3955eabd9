"""Private network namespaces: the only place lbfw loads rulesets into a kernel it may break.

A `Namespace` is a fresh network namespace held open by a child process (`unshare -n`
as root, `unshare -rn` in a user namespace otherwise). Everything that runs inside it
goes through `nsenter` with an argument list; nothing a ruleset contains is executed.

The holder dies with us, whichever way we go:

- `__exit__` kills it (normal exit, exceptions, KeyboardInterrupt);
- its stdin is a pipe only we hold: if we are killed (SIGKILL included), the pipe
  closes, `cat` sees end of file and exits, and so does `unshare`;
- `unshare --kill-child` kills `cat` if `unshare` itself is killed, and `unshare` is started
  through `setpriv --pdeathsig KILL` so the kernel kills it when the thread that made it dies
  (no preexec_fn: that is unsafe with threads).

When the last process in it is gone, the kernel frees the namespace with its rules,
interfaces and sockets.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

from ..errors import InputError, LbfwError, MissingDependencyError

# How long the sandbox waits for the holder to enter its namespace, and for commands.
SETUP_TIMEOUT = 10.0
COMMAND_TIMEOUT = 60.0

_RESTORE_TOOLS = {
    ("ip", "legacy"): "iptables-legacy-restore",
    ("ip", "nft"): "iptables-nft-restore",
    ("ip6", "legacy"): "ip6tables-legacy-restore",
    ("ip6", "nft"): "ip6tables-nft-restore",
}
_SAVE_TOOLS = ("iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save")

# Linux refuses interface names that are empty, longer than 15 bytes, "." or "..",
# or that contain "/", ":" or whitespace (net/core/dev.c dev_valid_name).
_IFNAME_OK = re.compile(r"^[^/:\s]{1,15}$")


class SandboxError(LbfwError):
    """A command inside the sandbox failed, or the sandbox could not be made."""

    def __init__(
        self, message: str, argv: Sequence[str] = (), returncode: Optional[int] = None, stderr: str = "", **kwargs
    ):
        super().__init__(message, **kwargs)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingDependencyError(
            f"{tool} is not installed", hint="Install the system packages scripts/system-deps.sh lists."
        )
    return path


def valid_ifname(name: str) -> bool:
    """True when Linux accepts ``name`` as an interface name (and it is not a wildcard)."""
    return bool(_IFNAME_OK.match(name)) and name not in (".", "..") and not name.endswith(("+", "*"))


class Namespace:
    """A private network namespace with lo up (127.0.0.1/8 and ::1).

    Use it as a context manager::

        with Namespace() as ns:
            ns.load_iptables(text)
            ns.run(["iptables-legacy-save"])

    ``ns.pid`` is the holder's pid; ``ns.path`` is ``/proc/PID/ns/net``.
    """

    def __init__(self, setup_timeout: float = SETUP_TIMEOUT):
        self.setup_timeout = setup_timeout
        self.pid: Optional[int] = None
        self.path: Optional[str] = None
        self.user_ns = os.geteuid() != 0
        self.interfaces: list[str] = []
        self.peer_of: dict = {}  # interface -> the other end of its veth pair
        self._holder: Optional[subprocess.Popen] = None
        self._peers = 0
        self._env: Optional[dict] = None
        self._private_dir: Optional[str] = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Namespace:
        try:
            self._start()
            self._setup_loopback()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        unshare = _need("unshare")
        _need("nsenter")
        # Root uses a plain network namespace; where that is refused (root without
        # CAP_SYS_ADMIN, as in many containers) or without root, a user namespace too.
        modes = [False, True] if os.geteuid() == 0 else [True]
        errors = []
        for user_ns in modes:
            err = self._spawn(unshare, user_ns)
            if err is None:
                self.path = f"/proc/{self.pid}/ns/net"
                return
            errors.append(err)
            self.close()
        hint = (
            "Run as root, or allow unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces)."
        )
        raise SandboxError(f"cannot create a private network namespace: {'; '.join(errors)}", hint=hint)

    def _spawn(self, unshare: str, user_ns: bool) -> Optional[str]:
        """Start the holder; None when its namespace is ready, else why it failed."""
        self.user_ns = user_ns
        flags = ["-rn"] if user_ns else ["-n"]
        if user_ns:
            # /run/xtables.lock belongs to the real root, whom a user namespace cannot act as:
            # the legacy tools take a private lock file instead (XTABLES_LOCKFILE, iptables 1.8.6+).
            self._private_dir = tempfile.mkdtemp(prefix="lbfw-sandbox-")
            self._env = dict(os.environ, XTABLES_LOCKFILE=os.path.join(self._private_dir, "xtables.lock"))
        else:
            self._env = None
        own = os.readlink("/proc/self/ns/net")
        # cat reads a pipe only we hold: it ends when we end, however we end.
        setpriv = shutil.which("setpriv")
        prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self._holder = subprocess.Popen(
            [*prefix, unshare, *flags, "--kill-child", "--", "cat"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            close_fds=True,
            # Its own session: a terminal's Ctrl-C goes to our process group, not to the holder,
            # so the namespace stays usable until __exit__ takes it down in order.
            start_new_session=True,
        )
        self.pid = self._holder.pid
        deadline = time.monotonic() + self.setup_timeout
        # unshare(2) happens after exec: wait until the holder's namespace differs from ours.
        while True:
            if self._holder.poll() is not None:
                err = self._holder.stderr.read().decode(errors="replace").strip() if self._holder.stderr else ""
                return f"unshare {' '.join(flags)}: {err or f'exit {self._holder.returncode}'}"
            try:
                # In a user namespace, also wait for unshare to write the uid map: joining before
                # leaves nsenter unmapped (uid 65534) and every command fails with EPERM.
                if os.readlink(f"/proc/{self.pid}/ns/net") != own and (
                    not user_ns or Path(f"/proc/{self.pid}/uid_map").read_text().strip()
                ):
                    return None
            except OSError:
                pass
            if time.monotonic() > deadline:
                return f"unshare {' '.join(flags)}: timed out"
            time.sleep(0.002)

    def close(self) -> None:
        """Kill the holder and wait for it: the kernel then frees the namespace. Idempotent."""
        holder, self._holder = self._holder, None
        private, self._private_dir = self._private_dir, None
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        if holder is None:
            return
        try:
            if holder.stdin is not None:
                holder.stdin.close()
        except OSError:
            pass
        if holder.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                holder.kill()  # SIGKILL to unshare; --kill-child takes cat along
        with contextlib.suppress(subprocess.TimeoutExpired):  # pragma: no cover - SIGKILL cannot be ignored
            holder.wait(timeout=5)
        if holder.stderr is not None:
            holder.stderr.close()

    @property
    def alive(self) -> bool:
        return self._holder is not None and self._holder.poll() is None

    # ------------------------------------------------------------------ running commands

    def enter_argv(self, argv: Sequence[str]) -> list[str]:
        """The argument list that runs ``argv`` inside this namespace."""
        if not self.alive:
            raise SandboxError("the sandbox namespace is not running")
        prefix = [_need("nsenter"), "-t", str(self.pid), "-n"]
        if self.user_ns:
            prefix += ["-U", "--preserve-credentials"]
        return prefix + ["--", *[str(a) for a in argv]]

    def run(
        self,
        argv: Sequence[str],
        input: Optional[str] = None,
        check: bool = True,
        timeout: float = COMMAND_TIMEOUT,
        cwd: Optional[str] = None,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` (a list, never a shell string) inside the namespace; text in, text out.

        ``check``: raise SandboxError (with the command's stderr) on a non-zero exit.
        A command that outlives ``timeout`` is killed and reported.
        """
        full = self.enter_argv(argv)
        try:
            proc = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                close_fds=True,
                cwd=cwd,
                env=self._env,
            )
        except subprocess.TimeoutExpired:
            raise SandboxError(f"{argv[0]} did not finish within {timeout:g} s in the sandbox", argv=argv) from None
        except FileNotFoundError as err:
            raise MissingDependencyError(f"cannot run {argv[0]}: {err}") from None
        if check and proc.returncode != 0:
            raise SandboxError(
                f"{argv[0]} failed in the sandbox: {proc.stderr.strip()}",
                argv=argv,
                returncode=proc.returncode,
                stderr=proc.stderr,
            )
        return proc

    # ------------------------------------------------------------------ set-up

    def _setup_loopback(self) -> None:
        ip = _need("ip")
        # Bringing lo up makes the kernel add 127.0.0.1/8, ::1 and `local 127.0.0.0/8`.
        self.run([ip, "link", "set", "lo", "up"])
        addrs = self.run([ip, "-o", "addr", "show", "dev", "lo"]).stdout
        if " 127.0.0.1/8 " not in addrs:
            self.run([ip, "addr", "add", "127.0.0.1/8", "dev", "lo"], check=False)
        if " ::1/128 " not in addrs:
            # IPv6 may be disabled in new namespaces (sysctl); without it ::1 flows cannot be observed.
            self.run(["sysctl", "-q", "-w", "net.ipv6.conf.lo.disable_ipv6=0"], check=False)
            self.run([ip, "addr", "add", "::1/128", "dev", "lo"], check=False)
        routes = self.run([ip, "-4", "route", "show", "table", "local", "127.0.0.0/8"]).stdout
        if "local 127.0.0.0/8" not in routes:
            raise SandboxError("the sandbox has no `local 127.0.0.0/8` route on lo")

    def add_interface(self, name: str, up: bool = False) -> None:
        """Create an interface called ``name`` (one end of a veth pair: the dummy module may be
        absent), so that rulesets naming it (nft `iif "eth0"`) load. Existing names are skipped."""
        if name in self.interfaces or name == "lo":
            return
        if not valid_ifname(name):
            raise SandboxError(f"not a valid interface name: {name!r}")
        peer = self._free_peer_name({name})
        self.run([_need("ip"), "link", "add", "name", name, "type", "veth", "peer", "name", peer])
        self.interfaces += [name, peer]
        self.peer_of[name] = peer
        if up:
            self.run([_need("ip"), "link", "set", "dev", name, "up"])
            self.run([_need("ip"), "link", "set", "dev", peer, "up"])

    add_dummy = add_interface  # the name docs/architecture.md first gave it

    def add_interfaces(self, names) -> list[str]:
        """Create every valid, new name of ``names`` in one `ip -batch` call; returns those made."""
        todo = []
        for name in names:
            if name == "lo" or name in self.interfaces or name in todo or not valid_ifname(name):
                continue
            todo.append(name)
        if not todo:
            return []
        taken = set(todo) | set(self.interfaces)
        lines = []
        for name in todo:
            peer = self._free_peer_name(taken)
            taken.add(peer)
            lines.append(f"link add name {name} type veth peer name {peer}\n")
            self.interfaces += [name, peer]
            self.peer_of[name] = peer
        self.run([_need("ip"), "-batch", "-"], input="".join(lines))
        return todo

    def _free_peer_name(self, avoid) -> str:
        while True:
            peer = f"lbfwp{self._peers}"
            self._peers += 1
            if peer not in avoid and peer not in self.interfaces:
                return peer

    # ------------------------------------------------------------------ loading rulesets

    def load_iptables(
        self, text: str, family: str = "ip", backend: str = "legacy", source: Optional[str] = None
    ) -> None:
        """Load an iptables-save / ip6tables-save dump with the real restore tool.

        family "ip" | "ip6"; backend "legacy" | "nft". A dump the kernel rejects raises
        InputError naming ``source`` (and the line when the tool says which).
        """
        tool = _RESTORE_TOOLS.get((family, backend))
        if tool is None:
            raise ValueError(f"family {family!r} / backend {backend!r}")
        _need(tool)
        proc = self.run([tool], input=text, check=False)
        if proc.returncode != 0:
            raise _rejected(tool, proc.stderr, source)

    def load_nft(self, text_or_path: Union[str, Path], source: Optional[str] = None, json: bool = False) -> None:
        """Load an nft ruleset with `nft -f` (one transaction). A ``Path`` is loaded from
        its file (so relative `include`s resolve); a ``str`` is the text itself.
        ``json=True``: the text is `nft -j list ruleset` JSON."""
        nft = _need("nft")
        argv = [nft, "-j"] if json else [nft]
        if isinstance(text_or_path, Path):
            # Relative includes resolve as they would where the file lives: its directory is
            # both the include path and the working directory.
            folder = str(text_or_path.resolve().parent)
            proc = self.run(argv + ["-I", folder, "-f", str(text_or_path.resolve())], check=False, cwd=folder)
            source = source or str(text_or_path)
        else:
            proc = self.run(argv + ["-f", "-"], input=text_or_path, check=False)
        if proc.returncode != 0:
            raise _rejected("nft", proc.stderr, source)

    def legacy_available(self) -> bool:
        """Whether this kernel has legacy xtables (6.17+ may not: CONFIG_NETFILTER_XTABLES_LEGACY).

        In a user namespace (no root) legacy tables load but cannot be listed back
        (/proc/net/ip_tables_names belongs to the real root), so iptables-nft is used there."""
        if shutil.which("iptables-legacy") is None or self.user_ns:
            return False
        return self.run(["iptables-legacy", "-w", "-t", "filter", "-S"], check=False).returncode == 0

    # ------------------------------------------------------------------ reading back

    def dump(self, raw: bool = False) -> dict:
        """What the namespace's kernel holds: {tool: output} for iptables-legacy-save,
        ip6tables-legacy-save, iptables-nft-save, ip6tables-nft-save and "nft" (list ruleset).

        Unless ``raw``, the output is made comparable: "#" comment lines (they carry a
        timestamp) are dropped, chain counters are zeroed and nft is listed stateless (-s).
        Tools that are missing or fail give "".
        """
        out = {}
        for tool in _SAVE_TOOLS:
            if shutil.which(tool) is None:
                out[tool] = ""
                continue
            proc = self.run([tool], check=False)
            text = proc.stdout if proc.returncode == 0 else ""
            out[tool] = text if raw else _comparable_save(text)
        nft = ["nft", "list", "ruleset"] if raw else ["nft", "-s", "list", "ruleset"]
        listing = self.run(nft, check=False) if shutil.which("nft") else None
        out["nft"] = listing.stdout if listing is not None and listing.returncode == 0 else ""
        return out


_COUNTERS = re.compile(r"\[\d+:\d+\]$")
_LINE_FAILED = re.compile(r"line:? (\d+)")
_NFT_LINE = re.compile(r"^[^:\n]*:(\d+):\d+(?:-\d+)?: Error: (.*)$", re.M)


def _comparable_save(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.startswith(":"):
            line = _COUNTERS.sub("[0:0]", line)
        lines.append(line)
    return "\n".join(lines) + ("\n" if lines else "")


def _rejected(tool: str, stderr: str, source: Optional[str]) -> InputError:
    """Turn a restore tool's complaint into `SOURCE:LINE: the kernel rejected it: ...`."""
    # Drop the usage advice ("Try `iptables-restore -h' ...") the tools append to every error.
    kept = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.lstrip().startswith("Try `")]
    message = " ".join(kept) or f"{tool} failed"
    line = None
    if tool == "nft":
        found = _NFT_LINE.search(stderr)
        if found:
            line = int(found.group(1))
            message = found.group(2).strip()
    else:
        found = _LINE_FAILED.search(stderr)
        if found:
            line = int(found.group(1))
    err = InputError(f"the kernel rejected it ({tool}): {message}", path=source or "-", line=line)
    err.stderr = stderr  # the tool's full complaint (callers look for missing interfaces in it)
    return err


def missing_interfaces(nft_stderr: str) -> list[str]:
    """The interface names `nft -f` said do not exist, read off its caret lines::

    /dev/stdin:5:20-25: Error: Interface does not exist
      iif . ip saddr { "eth9" . 1.2.3.4 } accept
                       ^^^^^^
    """
    lines = nft_stderr.splitlines()
    names = []
    for i, line in enumerate(lines[:-2]):
        if not line.endswith("Error: Interface does not exist"):
            continue
        text, carets = lines[i + 1], lines[i + 2]
        start = carets.find("^")
        if start < 0:
            continue
        name = text[start : carets.rfind("^") + 1].strip().strip('"')
        if name and name not in names:
            names.append(name)
    return names
