#!/bin/sh
# Make sure the system tools lbfw needs are present. As root on Debian/Ubuntu, install
# what is missing with apt-get; otherwise say exactly what to install and fail.
set -eu
missing=""
need() { command -v "$1" >/dev/null 2>&1 || missing="$missing $2"; }
need iptables-legacy-save iptables
need iptables-nft-save iptables
need nft nftables
need ip iproute2
need unshare util-linux
need nsenter util-linux
[ -e /usr/lib/x86_64-linux-gnu/libnftables.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libnftables.so.1 ] \
  || ldconfig -p 2>/dev/null | grep -q 'libnftables.so.1 ' || missing="$missing libnftables1"
python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv"
# The fleet tests: namespace hosts reached by ssh through `sshd -i`, and the HTML report in Chromium.
need ssh openssh-client
need ssh-keygen openssh-client
[ -x /usr/sbin/sshd ] || missing="$missing openssh-server"
need chromium chromium
missing=$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/^ *//; s/ *$//')
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "lbfw setup: installing $missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  others=$(echo " $missing " | sed 's/ openssh-server / /; s/^ *//; s/ *$//')
  if [ -n "$others" ]; then
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $others >/dev/null
  fi
  case " $missing " in *" openssh-server "*)
    # The tests only run `sshd -i` inside namespaces: no sshd may start listening on this machine's port 22.
    # On a systemd machine openssh-server's postinst would start ssh.service, so a temporary policy-rc.d
    # exiting 101 ("action forbidden", honoured by invoke-rc.d and deb-systemd-invoke) stops that during this
    # apt-get and is removed afterwards (an existing one is kept aside and put back); the unit the package
    # enabled for the next boot is disabled again.
    policy=/usr/sbin/policy-rc.d
    saved=""
    if [ -e "$policy" ]; then saved=$(mktemp "$policy.lbfw.XXXXXX"); mv "$policy" "$saved"; fi
    restore() { rm -f "$policy"; if [ -n "$saved" ]; then mv "$saved" "$policy"; fi; }
    trap restore EXIT INT TERM
    printf '#!/bin/sh\n# lbfw setup: no service starts while openssh-server is installed\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
    restore
    trap - EXIT INT TERM
    if command -v systemctl >/dev/null 2>&1; then systemctl disable -q ssh.service 2>/dev/null || true; fi
    ;;
  esac
  exit 0
fi
echo "lbfw setup: missing system packages: $missing" >&2
echo "  install them as root:  apt-get install $missing" >&2
exit 1
