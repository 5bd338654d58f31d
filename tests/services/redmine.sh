#!/usr/bin/env bash
# Install Redmine 5 (SQLite) from Debian's packages so that tests can run a real ticket API.
# Idempotent: does nothing when Redmine is installed and its bundle has a web server. Never starts
# the server (tests/helpdesks.py does, as www-data, on a free port). Needs root and apt.
set -euo pipefail

share=/usr/share/redmine
gemfile_local=$share/Gemfile.local
lock=/var/lib/redmine/Gemfile.lock

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
has_webrick() { [ -f "$gemfile_local" ] && grep -q "^gem 'webrick'" "$gemfile_local"; }
locked_webrick() { [ -f "$lock" ] && grep -q '^    webrick ' "$lock"; }

if installed redmine && installed redmine-sqlite && has_webrick && locked_webrick; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "redmine.sh: need root and apt-get to install redmine; its tests will skip" >&2
  exit 1
fi

apt_get() { apt-get -o DPkg::Lock::Timeout=600 "$@"; }
# Run a command; show its output only if it fails.
quietly() {
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "redmine.sh: failed: $*" >&2
    return 1
  fi
}
export DEBIAN_FRONTEND=noninteractive

# Debian's own bundler (ruby-bundler), e.g. 2.3.15 from 2.3.15-2+deb12u1.
debian_bundler() {
  local v
  v=$(dpkg-query -W -f='${Version}' ruby-bundler 2>/dev/null || true)
  if ! installed ruby-bundler || [ -z "$v" ]; then
    v=$(apt-cache show --no-all-versions ruby-bundler 2>/dev/null | sed -n 's/^Version: //p')
  fi
  v=${v#*:}
  v=${v%%[-+~]*}
  printf '%s' "$v"
}

if ! installed redmine || ! installed redmine-sqlite; then
  # Without the preseed, dbconfig-common asks which database to use and fails when nobody answers.
  debconf-set-selections <<'EOF'
redmine redmine/current-instances string default
redmine redmine/instances/default/dbconfig-install boolean true
redmine redmine/instances/default/database-type select sqlite3
redmine redmine/instances/default/default-language select en
EOF
  apt_get update -qq >/dev/null
  # bookworm-security's ruby3.1 (3.1.7) brings bundler 2.3.27 as a default gem, and that one
  # does not see the gems Debian installs: redmine's postinst (`bundle install --local`) fails
  # with "Could not find racc-1.6.2.gem for installation". Debian's own bundler sees them; the
  # variable reaches the postinst through apt and dpkg. The same apt-get also finishes a redmine
  # left half-configured by an earlier failed try.
  BUNDLER_VERSION=$(debian_bundler)
  [ -n "$BUNDLER_VERSION" ] && export BUNDLER_VERSION || unset BUNDLER_VERSION
  # Recommends would pull in passenger and apache2, which the tests do not use.
  quietly apt_get install -y -qq --no-install-recommends redmine redmine-sqlite
fi

# Debian's bundle has no web server; webrick (ruby-webrick, already installed) is enough here.
if ! has_webrick; then
  echo "gem 'webrick'" >>"$gemfile_local"
fi
if ! locked_webrick; then
  # Without a lock file the newest bundler runs, so pin Debian's (see above).
  BUNDLER_VERSION=$(debian_bundler)
  export BUNDLER_VERSION
  rm -f "$lock"
  (cd "$share" && quietly bundle install --local --quiet)
  chown www-data:www-data "$lock"
fi
