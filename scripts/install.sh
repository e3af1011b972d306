#!/usr/bin/env bash
# Install netdiag into ./.venv on a fresh Debian machine (run as root or with sudo for apt).
# With --test, also install what the test suite needs: tshark, tcpdump, omniORB (from PyPI),
# dnsmasq, nftables, ethtool, ping, dig, openssl, curl, chromium. Packages already present are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv python3-pip)
if (( want_test )); then
  have tshark   || need_apt+=(tshark)
  have tcpdump  || need_apt+=(tcpdump)
  have dnsmasq  || need_apt+=(dnsmasq-base)
  have nft      || need_apt+=(nftables)
  have openssl  || need_apt+=(openssl)
  have curl     || need_apt+=(curl)
  have ip       || need_apt+=(iproute2)
  have ethtool  || need_apt+=(ethtool)
  have ping     || need_apt+=(iputils-ping)
  have dig      || need_apt+=(dnsutils)
  have editcap  || need_apt+=(wireshark-common)
  have chromium || need_apt+=(chromium)
fi
if (( ${#need_apt[@]} )); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # dumpcap asks whether non-root users may capture; answer no without a prompt
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections 2>/dev/null || true
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if (( want_test )); then
  .venv/bin/python -m pip install -q -e '.[test]'
else
  .venv/bin/python -m pip install -q -e .
fi
