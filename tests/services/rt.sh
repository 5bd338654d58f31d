#!/usr/bin/env bash
# Install Request Tracker 5 (SQLite, standalone server) from Debian's packages for the RT sink
# tests. Idempotent: run it as often as you like. It never starts the server: tests/helpdesk_rt.py
# does, on a free port given to RT in the environment (RUNWATCH_RT_PORT, read by 99-local.pm).
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "rt.sh: must run as root (apt-get and /etc/request-tracker5)" >&2
  exit 1
fi

apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
export DEBIAN_FRONTEND=noninteractive

pkgs=(request-tracker5 rt5-db-sqlite rt5-standalone)
installed() {
  local pkg
  for pkg in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || return 1
  done
}

if ! installed; then
  # The root password only guards an instance bound to 127.0.0.1 that the tests build and use
  # through an API token. webbaseurl has no port on purpose: the port is chosen at start.
  debconf-set-selections <<'EOF'
request-tracker5 request-tracker5/rtname string rt.test
request-tracker5 request-tracker5/organization string test.local
request-tracker5 request-tracker5/correspondaddress string rt@localhost
request-tracker5 request-tracker5/commentaddress string rt-comment@localhost
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1
request-tracker5 request-tracker5/webpath string /rt
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/install-cronjobs boolean false
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
request-tracker5 request-tracker5/initial-root-password password runwatch-rt-root
EOF
  apt_get update -qq
  # apt-get also configures whatever else is half-installed (another package's failing postinst
  # makes it exit 100), so judge by RT's own packages, not by apt-get's exit status.
  apt_get install -y -qq --no-install-recommends "${pkgs[@]}" \
    || echo "rt.sh: apt-get reported errors; checking RT's packages" >&2
  if ! installed; then
    echo "rt.sh: request-tracker5 is not installed; see apt-get's output above" >&2
    exit 1
  fi
fi

conf=/etc/request-tracker5
# Shipped root-only 0600; the server and the provisioning script run as www-data.
chown root:www-data "$conf/RT_SiteConfig.pm"
chmod 0640 "$conf/RT_SiteConfig.pm"

# Overrides. The port is chosen at start and comes in as RUNWATCH_RT_PORT: a config file is Perl,
# and RT reads it once in the master before the workers fork.
cat >"$conf/RT_SiteConfig.d/99-local.pm" <<'EOF'
# Written by runwatch tests/services/rt.sh: a loopback test instance.
Set($WebPath, "");
Set($WebDomain, "127.0.0.1");
Set($MailCommand, "mbox");
Set($LogToSyslog, undef);
Set($LogToSTDERR, "warning");
# The default cost of 12 spends about 220 ms hashing on every token request.
Set($BcryptCost, 4);
if (my $port = $ENV{RUNWATCH_RT_PORT}) {
    Set($WebPort, $port);
    Set($WebBaseURL, "http://127.0.0.1:$port");
}
1;
EOF
chown root:www-data "$conf/RT_SiteConfig.d/99-local.pm"
chmod 0640 "$conf/RT_SiteConfig.d/99-local.pm"

echo "rt.sh: request-tracker5 installed and configured ($(dpkg-query -W -f='${Version}' request-tracker5))"
