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
# The real ufw, fail2ban and firewalld that tests/kernel/test_managers_*.py drive inside private network +
# mount namespaces (firewalld with a private dbus-daemon of its own). Installed with nothing started (below).
need ufw ufw
need fail2ban-client fail2ban
need firewalld firewalld
need firewall-cmd firewalld
need dbus-daemon dbus
missing=$(echo "$missing" | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/^ *//; s/ *$//')
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "lbfw setup: installing $missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # Nothing may start on the host (no sshd on port 22, no fail2ban): a policy-rc.d exiting 101
  # ("action forbidden", honoured by invoke-rc.d and deb-systemd-invoke), unless one is there already.
  cleanup=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    cleanup=/usr/sbin/policy-rc.d
  fi
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  [ -z "$cleanup" ] || rm -f "$cleanup"
  # openssh-server enables ssh.service for the next boot: the tests only run `sshd -i` inside namespaces.
  case " $missing " in *" openssh-server "*)
    if command -v systemctl >/dev/null 2>&1; then systemctl disable -q ssh.service 2>/dev/null || true; fi ;;
  esac
  # firewalld enables firewalld.service for the next boot: the tests only run it inside namespaces.
  case " $missing " in *" firewalld "*)
    if command -v systemctl >/dev/null 2>&1; then systemctl disable -q firewalld.service 2>/dev/null || true; fi ;;
  esac
  exit 0
fi
echo "lbfw setup: missing system packages: $missing" >&2
echo "  install them as root:  apt-get install $missing" >&2
exit 1
