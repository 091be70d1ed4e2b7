#!/usr/bin/env bash
# realstack.sh: a real mail stack on loopback, for experiments and tests.
#
# It runs private instances of Debian's Postfix, clamav-milter, clamd and
# Dovecot, everything (configuration, queue, pid files, logs, mailboxes,
# signature database) under one folder DIR, all listening on 127.0.0.1 only.
# The system's own instances and configuration are never touched.
#
#   realstack.sh up DIR [--profile incident|remediated] [--clamd-via HOST:PORT]
#                       [--mailchaos BIN] [--watch PID]
#   realstack.sh apply DIR --profile incident|remediated
#   realstack.sh status DIR
#   realstack.sh down DIR
#
# Mail path: SMTP (Postfix smtpd) -> clamav-milter -> clamd (INSTREAM), then
# Postfix's virtual(8) delivery writes Maildirs under DIR/mail that
# Dovecot serves over IMAP. See README.md next to this script.
#
# Environment:
#   REALSTACK_SMTP_PORT, REALSTACK_IMAP_PORT, REALSTACK_CLAMD_PORT,
#   REALSTACK_MILTER_PORT, REALSTACK_PROXY_PORT, REALSTACK_LINK_PORT
#                           fixed ports; a free one is chosen for each unset
#   REALSTACK_SMTPD_MAXPROC smtpd process limit (default 20, both profiles)
#   REALSTACK_TIMEOUT       seconds to wait for each daemon (default 60)
#   REALSTACK_DB            signature database folder (default: db/ next to
#                           this script)
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export LC_ALL=C
shopt -s lastpipe
# A caller that goes away must not kill us halfway through up or down:
# writes to its closed pipe fail instead (the daemons get SIGPIPE back).
trap '' PIPE

PROG=realstack.sh
SCRIPT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/$(basename "${BASH_SOURCE[0]}")
DB_SRC=${REALSTACK_DB:-$(dirname "$SCRIPT")/db}
TIMEOUT=${REALSTACK_TIMEOUT:-60}
[[ $TIMEOUT =~ ^[1-9][0-9]*$ ]] || {
	echo "realstack.sh: error: REALSTACK_TIMEOUT=$TIMEOUT is not a number of seconds" >&2
	exit 1
}
DOMAIN=realstack.test
# login:password; the address is login@DOMAIN.
USERS=(tester:tester-pass sender:sender-pass)
# The order daemons are started in; down goes backwards.
DAEMONS=(clamd proxy milter dovecot postfix)

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

usage() {
	cat >&2 <<EOF
usage: $PROG up DIR [--profile incident|remediated] [--clamd-via HOST:PORT] [--mailchaos BIN] [--watch PID]
       $PROG apply DIR --profile incident|remediated
       $PROG status DIR
       $PROG down DIR
EOF
	exit 2
}

# --- files -------------------------------------------------------------------

# check_path refuses a symlink at PATH: nothing is ever written through one.
check_path() {
	if [[ -L $1 ]]; then
		die "$1 is a symlink; refusing to write through it"
	fi
}

# mkdir_safe DIR [MODE [OWNER]] creates a directory (not through a
# symlink) with MODE and OWNER. One that exists is left as it is: a folder
# an unprivileged daemon owns could be swapped for a symlink between a check
# and a chmod or chown, which root would then apply to the link's target.
mkdir_safe() {
	local d=$1 mode=${2:-0755} owner=${3:-}
	check_path "$d"
	if [[ -e $d ]]; then
		[[ -d $d ]] || die "$d exists and is not a directory"
		return 0
	fi
	mkdir -m "$mode" "$d"
	chmod "$mode" "$d" # past the umask
	if [[ -n $owner ]]; then chown -h "$owner" "$d"; fi
}

# put_file PATH [MODE] writes stdin to PATH atomically (rename, so that a
# symlink put there is replaced, not followed).
put_file() {
	local f=$1 mode=${2:-0644} tmp
	check_path "$f"
	tmp=$(mktemp "$(dirname "$f")/.put.XXXXXX")
	cat >"$tmp"
	chmod "$mode" "$tmp"
	mv -fT "$tmp" "$f"
}

# touch_log PATH [OWNER] creates a log file for a daemon that writes it after
# dropping privileges.
touch_log() {
	check_path "$1"
	[[ -f $1 ]] || : >"$1"
	if [[ -n ${2:-} ]]; then chown "$2" "$1"; fi
	chmod 0644 "$1"
}

# tail_log FILE... prints the end of each log that exists, for error messages.
tail_log() {
	local f
	for f in "$@"; do
		if [[ -s $f ]]; then
			printf -- '--- last lines of %s\n' "$f" >&2
			tail -n 15 "$f" >&2
		fi
	done
}

# --- processes ---------------------------------------------------------------

# proc_start PID prints the process' start time (clock ticks since boot), the
# field that tells a process from a later one that reuses its PID.
proc_start() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	[[ $1 != Z ]] || return 1
	printf '%s\n' "${20}"
}

pidfile() { printf '%s/run/%s.pid\n' "$DIR" "$1"; }

# write_pid NAME PID records a daemon's PID and start time.
write_pid() {
	local st
	st=$(proc_start "$2") || return 1
	printf '%s %s\n' "$2" "$st" | put_file "$(pidfile "$1")"
}

# read_pid NAME prints the PID of NAME if that very process is alive.
read_pid() {
	local f pid st now
	f=$(pidfile "$1")
	[[ -f $f && ! -L $f ]] || return 1
	read -r pid st <"$f" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	now=$(proc_start "$pid") || return 1
	[[ $now == "$st" ]] || return 1
	printf '%s\n' "$pid"
}

# descendants PID prints every process below PID. (Processes come and go
# while /proc is read: cat's complaints about those are not failures.)
descendants() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
		{ pid = $1; line = $0; sub(/^.*\) /, "", line); split(line, f, " "); kids[f[2]] = kids[f[2]] " " pid }
		END {
			n = split(kids[root], q, " ")
			for (i = 1; i <= n; i++) {
				print q[i]
				m = split(kids[q[i]], more, " ")
				for (j = 1; j <= m; j++) q[++n] = more[j]
			}
		}'
}

# with_start PID... prints PID:START for each process that exists.
with_start() {
	local p st
	for p in "$@"; do
		if st=$(proc_start "$p"); then printf '%s:%s\n' "$p" "$st"; fi
	done
}

# still PID:START... prints the PIDs of those processes that are still the
# very same (zombies excepted): a PID reused since is not one of ours.
still() {
	local e st
	for e in "$@"; do
		if st=$(proc_start "${e%%:*}") && [[ $st == "${e#*:}" ]]; then printf '%s\n' "${e%%:*}"; fi
	done
}

# alive PID... prints the PIDs that still exist (zombies excepted).
alive() {
	local p
	for p in "$@"; do
		if proc_start "$p" >/dev/null; then printf '%s\n' "$p"; fi
	done
}

# poke PORT opens and closes a connection to 127.0.0.1:PORT.
poke() {
	{ exec 7<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 7>&-
	return 0
}

# stop_daemons NAME... stops daemons and every process below them: SIGTERM
# to each in the order given, then waiting for all of them together, then
# SIGKILL for what is left after 10 seconds.
stop_daemons() {
	local name pid procs=() left i end stopped=() milter=''
	for name in "$@"; do
		if pid=$(read_pid "$name"); then
			# shellcheck disable=SC2207
			procs+=($(with_start "$pid" $(descendants "$pid")))
			kill -TERM "$pid" 2>/dev/null || true
			stopped+=("$name (pid $pid)")
			if [[ $name == milter ]]; then milter=$pid; fi
		fi
	done
	end=$((SECONDS + 10))
	for ((i = 0; SECONDS < end; i++)); do
		# shellcheck disable=SC2207
		left=($(still "${procs[@]}"))
		[[ ${#left[@]} -gt 0 ]] || break
		# libmilter notices SIGTERM only when its listener's poll returns,
		# which takes up to 5 seconds unless a connection comes in.
		if [[ -n $milter && -n ${S_MILTER_PORT:-} ]] && ((i % 4 == 1)) && proc_start "$milter" >/dev/null; then
			poke "$S_MILTER_PORT"
		fi
		sleep 0.05
	done
	# shellcheck disable=SC2207
	left=($(still "${procs[@]}"))
	if [[ ${#left[@]} -gt 0 ]]; then
		say "still running after 10s, sending SIGKILL to ${left[*]}"
		kill -KILL "${left[@]}" 2>/dev/null || true
	fi
	# The pid files go last: status shows a daemon until it is gone.
	for name in "$@"; do rm -f "$(pidfile "$name")"; done
	for name in "${stopped[@]}"; do echo "stopped $name"; done
}

# --- ports -------------------------------------------------------------------

# port_in_use PORT: any IPv4 or IPv6 socket on that local port.
port_in_use() {
	local hex
	hex=$(printf '%04X' "$1")
	{ cat /proc/net/tcp /proc/net/tcp6 2>/dev/null || true; } |
		awk -v h="$hex" 'NR > 1 && substr($2, length($2) - 3) == h { found = 1 } END { exit !found }'
}

# listening PORT: a socket listens on 127.0.0.1:PORT (or the wildcard).
listening() {
	local hex
	hex=$(printf '%04X' "$1")
	awk -v a="0100007F:$hex" -v w="00000000:$hex" '$4 == "0A" && ($2 == a || $2 == w) { found = 1 } END { exit !found }' /proc/net/tcp
}

TAKEN=" "
# free_port prints a free port below the ephemeral range, not handed out yet.
free_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		[[ $TAKEN != *" $p "* ]] || continue
		port_in_use "$p" && continue
		TAKEN+="$p "
		printf '%s\n' "$p"
		return 0
	done
	die "no free port found on 127.0.0.1"
}

# pick_port VAR ENVNAME: the port from the environment, or a free one.
pick_port() {
	local v=${!2:-}
	if [[ -n $v ]]; then
		[[ $v =~ ^[0-9]+$ && $v -gt 0 && $v -lt 65536 ]] || die "$2=$v is not a port number"
		port_in_use "$v" && die "$2=$v: port $v is already in use"
		TAKEN+="$v "
	else
		v=$(free_port)
		TAKEN+="$v "
	fi
	printf -v "$1" '%s' "$v"
}

# wait_port NAME PORT PID LOG...: wait until PORT listens; fail at once when
# the process dies, or at the deadline.
wait_port() {
	local name=$1 port=$2 pid=$3 end
	shift 3
	end=$((SECONDS + TIMEOUT))
	until listening "$port"; do
		if [[ -n $pid ]] && ! proc_start "$pid" >/dev/null; then
			tail_log "$@"
			die "$name exited before listening on 127.0.0.1:$port"
		fi
		if ((SECONDS >= end)); then
			tail_log "$@"
			die "$name does not listen on 127.0.0.1:$port after ${TIMEOUT}s"
		fi
		sleep 0.05
	done
}

# --- state -------------------------------------------------------------------

STATE_KEYS=(PROFILE SMTP_PORT IMAP_PORT CLAMD_PORT MILTER_PORT PROXY_PORT CLAMD_VIA MAILCHAOS SMTPD_MAXPROC)

# load_state reads DIR/state (known keys only; never sourced).
load_state() {
	local f=$DIR/state k v known
	[[ -f $f && ! -L $f ]] || return 1
	while IFS='=' read -r k v; do
		for known in "${STATE_KEYS[@]}"; do
			if [[ $k == "$known" ]]; then printf -v "S_$k" '%s' "$v"; fi
		done
	done <"$f"
	[[ -n ${S_SMTP_PORT:-} ]]
}

save_state() {
	local k v
	for k in "${STATE_KEYS[@]}"; do
		v=S_$k
		printf '%s=%s\n' "$k" "${!v:-}"
	done | put_file "$DIR/state"
}

# --- configuration -----------------------------------------------------------

# layout sets the paths under DIR.
layout() {
	PF=$DIR/postfix
	SPOOL=$DIR/spool
	PFDATA=$DIR/postfix-data
	DV=$DIR/dovecot
	CL=$DIR/clamav
	LOGS=$DIR/log
	RUN=$DIR/run
	MAILROOT=$DIR/mail
	MAILDIR=$MAILROOT/$DOMAIN
	POSTFIX_LOG=$LOGS/postfix.log
	DOVECOT_LOG=$LOGS/dovecot.log
	CLAMD_LOG=$LOGS/clamd.log
	MILTER_LOG=$LOGS/clamav-milter.log
	PROXY_LOG=$LOGS/proxy.log
}

clamd_link() {
	if [[ -n ${S_CLAMD_VIA:-} ]]; then
		printf '%s\n' "$S_CLAMD_VIA"
	else
		printf '127.0.0.1:%s\n' "$S_CLAMD_PORT"
	fi
}

# The profile settings: the incident's defaults or the remediation.
profile_vars() {
	case $S_PROFILE in
	incident)
		P_MILTER_CONTENT_TIMEOUT=300s
		P_MILTER_READ_TIMEOUT=120
		P_CLAMD_MAXQUEUE=100
		P_CLAMD_CONNQUEUE=30
		P_BODY_CHECKS=
		;;
	remediated)
		P_MILTER_CONTENT_TIMEOUT=3s
		P_MILTER_READ_TIMEOUT=2
		P_CLAMD_MAXQUEUE=500
		P_CLAMD_CONNQUEUE=200
		P_BODY_CHECKS=regexp:$PF/body_checks
		;;
	*) die "unknown profile \"$S_PROFILE\": use incident or remediated" ;;
	esac
}

gen_clamd() {
	cat <<EOF
# clamd, written by $PROG; profile $S_PROFILE.
Foreground yes
User clamav
TCPAddr 127.0.0.1
TCPSocket $S_CLAMD_PORT
DatabaseDirectory $CL/db
TemporaryDirectory $CL/tmp
LogFile $CLAMD_LOG
LogFileMaxSize 0
LogTime yes
LogClean yes
LogVerbose yes
SelfCheck 0
# MaxThreads: the default (10) in both profiles.
MaxQueue $P_CLAMD_MAXQUEUE
MaxConnectionQueueLength $P_CLAMD_CONNQUEUE
EOF
}

gen_milter() {
	cat <<EOF
# clamav-milter, written by $PROG; profile $S_PROFILE.
Foreground yes
User clamav
MilterSocket inet:$S_MILTER_PORT@127.0.0.1
ClamdSocket tcp:$(clamd_link)
ReadTimeout $P_MILTER_READ_TIMEOUT
OnClean Accept
OnInfected Reject
RejectMsg virus found: %v
OnFail Defer
AddHeader Replace
TemporaryDirectory $CL/tmp
LogFile $MILTER_LOG
LogFileMaxSize 0
LogTime yes
LogVerbose yes
LogInfected Full
LogClean Full
EOF
}

gen_main_cf() {
	cat <<EOF
# Postfix main.cf, written by $PROG; profile $S_PROFILE.
compatibility_level = 3.6
queue_directory = $SPOOL
data_directory = $PFDATA
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
myorigin = \$myhostname
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_banner = \$myhostname ESMTP realstack
smtpd_relay_restrictions = reject_unauth_destination
default_transport = error:5.7.1 outbound mail is disabled in realstack
relay_transport = error:5.7.1 outbound mail is disabled in realstack
biff = no
append_dot_mydomain = no
disable_vrfy_command = yes
delay_warning_time = 0
maillog_file = $POSTFIX_LOG
maillog_file_prefixes = $LOGS
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_base = $MAILROOT
virtual_mailbox_maps = texthash:$PF/vmailbox
virtual_uid_maps = static:$MAIL_UID
virtual_gid_maps = static:$MAIL_GID
virtual_minimum_uid = 1
smtpd_milters = inet:127.0.0.1:$S_MILTER_PORT
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
milter_content_timeout = $P_MILTER_CONTENT_TIMEOUT
body_checks = $P_BODY_CHECKS
EOF
}

gen_master_cf() {
	cat <<EOF
# Postfix master.cf, written by $PROG. chroot n everywhere; smtpd on
# loopback only, its process limit the same in both profiles.
# service        type  private unpriv chroot wakeup maxproc command
127.0.0.1:$S_SMTP_PORT inet n     -      n      -      $S_SMTPD_MAXPROC      smtpd
pickup           unix  n       -      n      60     1       pickup
cleanup          unix  n       -      n      -      0       cleanup
qmgr             unix  n       -      n      300    1       qmgr
rewrite          unix  -       -      n      -      -       trivial-rewrite
bounce           unix  -       -      n      -      0       bounce
defer            unix  -       -      n      -      0       bounce
trace            unix  -       -      n      -      0       bounce
verify           unix  -       -      n      -      1       verify
flush            unix  n       -      n      1000?  0       flush
proxymap         unix  -       -      n      -      -       proxymap
proxywrite       unix  -       -      n      -      1       proxymap
showq            unix  n       -      n      -      -       showq
error            unix  -       -      n      -      -       error
retry            unix  -       -      n      -      -       error
discard          unix  -       -      n      -      -       discard
virtual          unix  -       n      n      -      -       virtual
anvil            unix  -       -      n      -      1       anvil
scache           unix  -       -      n      -      1       scache
postlog          unix-dgram n  -      n      -      1       postlogd
EOF
}

gen_body_checks() {
	cat <<EOF
# Interceptor of the remediated profile: known test viruses are rejected by
# Postfix's cleanup before the message is handed to the milter (and clamd).
/EICAR-STANDARD-ANTIVIRUS-TEST-FILE/	REJECT 5.7.1 virus rejected by body_checks (EICAR test signature)
/MAILCHAOS-TEST-VIRUS/	REJECT 5.7.1 virus rejected by body_checks (MAILCHAOS test signature)
# The flood's own pattern: an attachment that is the EICAR file, as its
# base64 line starts (body_checks sees encoded lines as they are).
/^WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJE/	REJECT 5.7.1 virus rejected by body_checks (EICAR test signature, base64 attachment)
EOF
}

gen_vmailbox() {
	local u
	for u in "${USERS[@]}"; do
		printf '%s@%s %s/%s/\n' "${u%%:*}" "$DOMAIN" "$DOMAIN" "${u%%:*}"
	done
}

# shellcheck disable=SC2153 # S_IMAP_PORT is set by printf -v.
gen_dovecot() {
	cat <<EOF
# Dovecot, written by $PROG.
base_dir = $RUN/dovecot
state_dir = $DV/state
instance_name = realstack
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
log_path = $DOVECOT_LOG
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~
login_greeting = realstack IMAP ready.
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%n $DV/users
}
userdb {
  driver = static
  args = uid=$MAIL_UID gid=$MAIL_GID home=$MAILDIR/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $S_IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
EOF
}

gen_users() {
	local u
	for u in "${USERS[@]}"; do
		printf '%s:{PLAIN}%s\n' "${u%%:*}" "${u#*:}"
	done
}

gen_env() {
	local u list=
	for u in "${USERS[@]}"; do
		list+="${list:+,}${u%%:*}@$DOMAIN:$u"
	done
	cat <<EOF
DIR=$DIR
PROFILE=$S_PROFILE
SMTP=127.0.0.1:$S_SMTP_PORT
IMAP=127.0.0.1:$S_IMAP_PORT
CLAMD=127.0.0.1:$S_CLAMD_PORT
MILTER=127.0.0.1:$S_MILTER_PORT
CLAMD_LINK=$(clamd_link)
PROXY=${S_PROXY_PORT:+http://127.0.0.1:$S_PROXY_PORT}
DOMAIN=$DOMAIN
USERS=$list
MAILDIR=$MAILDIR
POSTFIX_CONFIG=$PF
POSTFIX_LOG=$POSTFIX_LOG
DOVECOT_LOG=$DOVECOT_LOG
CLAMD_LOG=$CLAMD_LOG
MILTER_LOG=$MILTER_LOG
PROXY_LOG=${S_PROXY_PORT:+$PROXY_LOG}
SMTPD_MAXPROC=$S_SMTPD_MAXPROC
TARGET=$DIR/target.yaml
EOF
}

gen_target() {
	local u
	cat <<EOF
# mailchaos target file, written by $PROG.
name: realstack
EOF
	if [[ -n ${S_PROXY_PORT:-} ]]; then
		printf 'toxiproxy: http://127.0.0.1:%s\n' "$S_PROXY_PORT"
	fi
	cat <<EOF
endpoints:
  smtp: 127.0.0.1:$S_SMTP_PORT
  imap: 127.0.0.1:$S_IMAP_PORT
  clamd: 127.0.0.1:$S_CLAMD_PORT
users:
EOF
	for u in "${USERS[@]}"; do
		printf '  - {address: %s@%s, login: %s, password: %s}\n' "${u%%:*}" "$DOMAIN" "${u%%:*}" "${u#*:}"
	done
	if [[ -n ${S_PROXY_PORT:-} ]]; then gen_link_list; fi
}

# write_configs writes every configuration file.
write_configs() {
	profile_vars
	gen_main_cf | put_file "$PF/main.cf"
	gen_master_cf | put_file "$PF/master.cf"
	gen_body_checks | put_file "$PF/body_checks"
	gen_vmailbox | put_file "$PF/vmailbox"
	gen_clamd | put_file "$CL/clamd.conf"
	gen_milter | put_file "$CL/clamav-milter.conf"
	gen_dovecot | put_file "$DV/dovecot.conf"
	gen_users | put_file "$DV/users" 0640
	chgrp dovecot "$DV/users"
}

# conf_files NAME: the configuration files a daemon reads.
conf_files() {
	case $1 in
	postfix) echo "$PF/main.cf $PF/master.cf $PF/body_checks $PF/vmailbox" ;;
	clamd) echo "$CL/clamd.conf" ;;
	milter) echo "$CL/clamav-milter.conf" ;;
	dovecot) echo "$DV/dovecot.conf $DV/users" ;;
	esac
}

conf_sum() {
	# shellcheck disable=SC2002,SC2046
	cat $(conf_files "$1") | md5sum | cut -d' ' -f1
}

# mark_loaded NAME records the configuration a daemon runs with, so that
# apply restarts or reloads only what its new files change.
mark_loaded() {
	conf_sum "$1" | put_file "$RUN/$1.conf-sum"
}

# stale NAME: the daemon's files differ from those it runs with.
stale() {
	local f=$RUN/$1.conf-sum
	[[ -f $f ]] || return 0
	[[ $(conf_sum "$1") != "$(cat "$f")" ]]
}

write_env() {
	gen_env | put_file "$DIR/env"
	gen_target | put_file "$DIR/target.yaml"
}

# --- checks ------------------------------------------------------------------

# MARKER marks a folder as a stack's: nothing else is ever written into,
# reconfigured or stopped.
MARKER=.realstack

# set_dir DIR checks and canonicalises DIR (creating it with create=1). It
# must be a stack's folder (MARKER), or new, or empty; owned by root and
# writable by root alone, as must be every folder above it (a sticky one
# such as /tmp excepted): root writes and runs files there.
set_dir() {
	local d=$1 create=${2:-0} p mode owner
	[[ $d == /* ]] || d=$PWD/$d
	[[ $d =~ ^[A-Za-z0-9._/-]+$ ]] ||
		die "$d: the folder's path may contain only letters, digits and . _ - / (it goes into daemon configuration)"
	[[ /$d/ != */../* && /$d/ != */./* ]] || die "$d: give the folder's path without . or .. parts"
	if [[ -L $d ]]; then die "$d is a symlink; give a real directory"; fi
	p=$(dirname "$d")
	while :; do
		[[ -L $p ]] && die "$p (above $d) is a symlink; give a path without one"
		if [[ -e $p ]]; then
			read -r mode owner < <(stat -c '%a %u' "$p")
			if [[ $owner != 0 ]] || { ((8#$mode & 8#022)) && ! ((8#$mode & 8#1000)); }; then
				die "$p (above $d) is writable by users other than root; give a folder under one that is not"
			fi
		fi
		[[ $p != / ]] || break
		p=$(dirname "$p")
	done
	if [[ ! -e $d ]]; then
		[[ $create == 1 ]] || return 1
		mkdir -p -m 0755 "$d"
		: >"$d/$MARKER"
	fi
	[[ -d $d ]] || die "$d is not a directory"
	read -r mode owner < <(stat -c '%a %u' "$d")
	if [[ $owner != 0 ]] || ((8#$mode & 8#022)); then
		die "$d is not owned by root or is writable by others; give a folder only root can write"
	fi
	if [[ ! -f $d/$MARKER ]]; then
		if [[ $create == 1 ]] && [[ -z $(ls -A "$d") || $(ls -A "$d") == tool ]]; then
			: >"$d/$MARKER"
		else
			die "$d is not a folder $PROG made (no $MARKER in it): it only ever works in a new or empty folder"
		fi
	fi
	DIR=$(cd "$d" && pwd -P)
	layout
}

# lock [SECONDS] takes DIR's lock (fd 9; closed in every daemon started).
lock() {
	check_path "$DIR/.lock"
	exec 9>"$DIR/.lock"
	flock -w "${1:-$TIMEOUT}" 9 || die "$DIR is locked by another $PROG"
}

need_root() {
	[[ $EUID -eq 0 ]] || die "must run as root: Postfix, Dovecot and clamd start as root and drop privileges"
}

check_prereqs() {
	local missing=() b u
	for b in postfix postconf dovecot clamd clamav-milter flock setsid; do
		command -v "$b" >/dev/null || missing+=("$b")
	done
	if [[ ${#missing[@]} -gt 0 ]]; then
		die "missing programs: ${missing[*]} (apt-get install postfix dovecot-imapd clamav-daemon clamav-milter)"
	fi
	for u in nobody postfix dovecot dovenull clamav; do
		id -u "$u" >/dev/null 2>&1 || die "missing system user $u (it comes with the packages)"
	done
	getent group postdrop >/dev/null || die "missing group postdrop (it comes with postfix)"
	MAIL_UID=$(id -u nobody)
	MAIL_GID=$(getent group nogroup | cut -d: -f3 || true)
	[[ -n $MAIL_GID ]] || MAIL_GID=$(id -g nobody)
	[[ -d $DB_SRC ]] || die "signature database $DB_SRC is missing"
	ls "$DB_SRC"/*.ndb >/dev/null 2>&1 || die "no .ndb signature file in $DB_SRC"
}

# check_traversable: the daemons' unprivileged users must reach DIR.
check_traversable() {
	local p=$DIR mode
	while [[ -n $p ]]; do
		mode=$(stat -Lc %a "$p")
		if ((!(8#$mode & 1))); then
			die "$p (mode $mode) cannot be traversed by the daemons' unprivileged users: chmod o+x $p, or use a folder under /tmp"
		fi
		p=${p%/*}
	done
	# Unix sockets: paths longer than 107 bytes cannot be bound.
	if ((${#DIR} > 60)); then
		die "$DIR is too long a path for the daemons' unix sockets; use a shorter one (at most 60 bytes)"
	fi
}

# --- daemons -----------------------------------------------------------------

# daemon_logs NAME: the log files of a daemon, for error messages.
daemon_logs() {
	case $1 in
	clamd) echo "$CLAMD_LOG $LOGS/clamd.out" ;;
	milter) echo "$MILTER_LOG $LOGS/clamav-milter.out" ;;
	dovecot) echo "$DOVECOT_LOG $LOGS/dovecot.out" ;;
	postfix) echo "$POSTFIX_LOG $LOGS/postfix.out" ;;
	proxy) echo "$PROXY_LOG" ;;
	esac
}

# launch NAME LOG CMD...: start a foreground daemon in its own session,
# detached from our stdio and lock, and record its PID.
launch() {
	local name=$1 out=$2
	shift 2
	(
		trap - PIPE
		exec setsid "$@"
	) </dev/null >>"$out" 2>&1 9>&- &
	local pid=$!
	write_pid "$name" "$pid" || {
		tail_log "$out"
		die "$name exited at once"
	}
}

start_clamd() {
	touch_log "$CLAMD_LOG" clamav
	launch clamd "$LOGS/clamd.out" clamd -c "$CL/clamd.conf"
	wait_port clamd "$S_CLAMD_PORT" "$(read_pid clamd || true)" "$CLAMD_LOG" "$LOGS/clamd.out"
	mark_loaded clamd
}

start_milter() {
	touch_log "$MILTER_LOG" clamav
	launch milter "$LOGS/clamav-milter.out" clamav-milter -c "$CL/clamav-milter.conf"
	wait_port clamav-milter "$S_MILTER_PORT" "$(read_pid milter || true)" "$MILTER_LOG" "$LOGS/clamav-milter.out"
	mark_loaded milter
}

start_dovecot() {
	launch dovecot "$LOGS/dovecot.out" dovecot -F -c "$DV/dovecot.conf"
	wait_port dovecot "$S_IMAP_PORT" "$(read_pid dovecot || true)" "$DOVECOT_LOG" "$LOGS/dovecot.out"
	mark_loaded dovecot
}

start_postfix() {
	local out=$LOGS/postfix.out pidf=$SPOOL/pid/master.pid end pid=
	mark_loaded postfix
	if ! (
		trap - PIPE
		exec postfix -c "$PF" start
	) </dev/null >>"$out" 2>&1 9>&-; then
		tail_log "$POSTFIX_LOG" "$out"
		die "postfix -c $PF start failed"
	fi
	end=$((SECONDS + TIMEOUT))
	while :; do
		if [[ -f $pidf ]]; then
			pid=$(tr -dc 0-9 <"$pidf" 2>/dev/null || true)
			[[ -n $pid ]] && write_pid postfix "$pid" && break
		fi
		if ((SECONDS >= end)); then
			tail_log "$POSTFIX_LOG" "$out"
			die "postfix master wrote no pid file $pidf after ${TIMEOUT}s"
		fi
		sleep 0.05
	done
	wait_port postfix "$S_SMTP_PORT" "$pid" "$POSTFIX_LOG" "$out"
}

# gen_link_list prints the links: section of the target and links files:
# the clamd link on mailchaos' proxy.
gen_link_list() {
	cat <<EOF
links:
  - name: clamd
    listen: $(clamd_link)
    upstream: 127.0.0.1:$S_CLAMD_PORT
EOF
}

# gen_links writes the proxy's links file, whose links the proxy creates
# at start and keeps.
gen_links() {
	printf '# mailchaos links file, written by %s.\n' "$PROG"
	gen_link_list
}

# start_proxy runs mailchaos proxy serve with the links file and a state
# file under DIR/proxy: the clamd link exists before the milter starts, and
# a restarted proxy brings back the links created through its API.
start_proxy() {
	local link dir=$DIR/proxy
	mkdir_safe "$dir" 0700
	gen_links | put_file "$dir/links.yaml" 0600
	# A stack brought up afresh starts without the links of an earlier one.
	rm -f "$dir/state.json"
	launch proxy "$PROXY_LOG" "$S_MAILCHAOS" proxy serve --listen "127.0.0.1:$S_PROXY_PORT" \
		--links "$dir/links.yaml" --state "$dir/state.json"
	wait_port "mailchaos proxy" "$S_PROXY_PORT" "$(read_pid proxy || true)" "$PROXY_LOG"
	link=$(clamd_link)
	wait_port "clamd link" "${link##*:}" "$(read_pid proxy || true)" "$PROXY_LOG"
}

# stop_watch PID stops a watchdog: its process group (it leads one), so
# that its tail goes too.
stop_watch() {
	kill -TERM -- "-$1" 2>/dev/null || kill -TERM "$1" 2>/dev/null || true
	rm -f "$(pidfile watch)"
}

start_watch() {
	local target=$1 st old
	st=$(proc_start "$target") || die "--watch $target: no such process"
	if old=$(read_pid watch); then stop_watch "$old"; fi
	(
		trap - PIPE
		exec setsid bash "$SCRIPT" _watch "$DIR" "$target" "$st"
	) </dev/null >>"$LOGS/watch.log" 2>&1 9>&- &
	write_pid watch "$!" || die "the watchdog exited at once"
}

# cmd_watch DIR PID START (internal, the watchdog): wait until the process
# PID that started at START is gone (exited, or a zombie nobody reaps), then
# take the stack down.
cmd_watch() {
	local pid=$2 st=$3 now
	set_dir "$1" 0 || return 0
	while now=$(proc_start "$pid") && [[ $now == "$st" ]]; do
		sleep 0.5
	done
	say "$(date '+%F %T') process $pid is gone: taking the stack in $DIR down"
	# An up in progress finishes first.
	lock 600
	load_state || true
	do_down
}

# --- commands ----------------------------------------------------------------

# wanted_daemons prints the daemons the state asks for (the proxy only with
# --mailchaos).
wanted_daemons() {
	local d
	for d in "${DAEMONS[@]}"; do
		if [[ $d == proxy && -z ${S_MAILCHAOS:-} ]]; then continue; fi
		printf '%s\n' "$d"
	done
}

# adopt_postfix records the master of our Postfix instance if it runs
# without our pid file (up was interrupted right after starting it): its own
# pid file, checked against the instance the process serves.
adopt_postfix() {
	local pid
	read_pid postfix >/dev/null && return 0
	[[ -f $SPOOL/pid/master.pid ]] || return 0
	pid=$(tr -dc 0-9 <"$SPOOL/pid/master.pid" 2>/dev/null || true)
	[[ -n $pid ]] || return 0
	if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "MAIL_CONFIG=$PF"; then
		write_pid postfix "$pid" || true
	fi
}

do_down() {
	local d any=0 i me=$$ order=()
	adopt_postfix
	for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
		order+=("${DAEMONS[i]}")
	done
	if any_running; then any=1; fi
	stop_daemons "${order[@]}"
	# The watchdog, unless it is the one running this.
	if d=$(read_pid watch) && [[ $d != "$me" ]]; then
		stop_watch "$d"
		echo "stopped watchdog (pid $d)"
	fi
	rm -f "$(pidfile watch)"
	if [[ $any == 0 ]]; then echo "nothing running in $DIR"; fi
	return 0
}

cmd_down() {
	need_root
	set_dir "$1" 0 || {
		echo "nothing running in $1 (no such folder)"
		return 0
	}
	[[ -d $DIR/run ]] || {
		echo "nothing running in $DIR"
		return 0
	}
	lock
	load_state || true
	do_down
}

cmd_status() {
	set_dir "$1" 0 || {
		echo "stopped: $1 does not exist"
		return 3
	}
	load_state || {
		echo "stopped: no stack in $DIR"
		return 3
	}
	layout
	local d pid up=0 down=0 addr
	for d in $(wanted_daemons); do
		case $d in
		clamd) addr=127.0.0.1:$S_CLAMD_PORT ;;
		proxy) addr=http://127.0.0.1:$S_PROXY_PORT ;;
		milter) addr=127.0.0.1:$S_MILTER_PORT ;;
		dovecot) addr=127.0.0.1:$S_IMAP_PORT ;;
		postfix) addr=127.0.0.1:$S_SMTP_PORT ;;
		esac
		if pid=$(read_pid "$d"); then
			printf '%-8s running  pid %-7s %s\n' "$d" "$pid" "$addr"
			up=$((up + 1))
		else
			printf '%-8s stopped\n' "$d"
			down=$((down + 1))
		fi
	done
	if pid=$(read_pid watch); then printf '%-8s running  pid %s\n' watchdog "$pid"; fi
	printf 'profile  %s\n' "$S_PROFILE"
	if ((down == 0)); then return 0; fi
	if ((up == 0)); then return 3; fi
	return 1
}

# all_running: every daemon the state asks for is alive.
all_running() {
	local d
	for d in $(wanted_daemons); do
		read_pid "$d" >/dev/null || return 1
	done
}

any_running() {
	local d
	for d in "${DAEMONS[@]}"; do
		if read_pid "$d" >/dev/null; then return 0; fi
	done
	return 1
}

UP_DONE=0
on_up_exit() {
	local rc=$?
	if [[ $UP_DONE == 0 ]]; then
		say "up failed; stopping what was started (logs stay in $LOGS)"
		do_down >&2 || true
	fi
	exit "$rc"
}

cmd_up() {
	local dir=$1 profile='' via='' mc='' watch=''
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--profile) profile=${2:?--profile needs a value}; shift 2 ;;
		--profile=*) profile=${1#*=}; shift ;;
		--clamd-via) via=${2:?--clamd-via needs HOST:PORT}; shift 2 ;;
		--clamd-via=*) via=${1#*=}; shift ;;
		--mailchaos) mc=${2:?--mailchaos needs a path}; shift 2 ;;
		--mailchaos=*) mc=${1#*=}; shift ;;
		--watch) watch=${2:?--watch needs a PID}; shift 2 ;;
		--watch=*) watch=${1#*=}; shift ;;
		*) die "up: unknown argument $1" ;;
		esac
	done
	need_root
	check_prereqs
	if [[ -n $profile && $profile != incident && $profile != remediated ]]; then
		die "unknown profile \"$profile\": use incident or remediated"
	fi
	if [[ -n $via ]]; then
		[[ $via =~ ^127\.0\.0\.1:[0-9]+$ ]] || die "--clamd-via $via: give 127.0.0.1:PORT, such as 127.0.0.1:7310"
		TAKEN+="${via##*:} "
	fi
	if [[ -n $mc ]]; then
		[[ -x $mc && -f $mc ]] || die "--mailchaos $mc: not an executable file"
		mc=$(cd "$(dirname "$mc")" && pwd -P)/$(basename "$mc")
	fi
	if [[ -n $watch ]]; then
		if ! [[ $watch =~ ^[0-9]+$ ]] || ! proc_start "$watch" >/dev/null; then
			die "--watch $watch: no such process"
		fi
	fi
	set_dir "$dir" 1
	check_traversable
	mkdir_safe "$RUN"
	mkdir_safe "$LOGS"
	lock

	if load_state && all_running; then
		if [[ -n $profile && $profile != "$S_PROFILE" ]]; then
			say "the stack runs profile $S_PROFILE; use '$PROG apply $DIR --profile $profile' to change it"
		fi
		if [[ -n $via && $via != "${S_CLAMD_VIA:-}" ]] || [[ -n $mc && $mc != "${S_MAILCHAOS:-}" ]]; then
			say "the stack runs with other --clamd-via/--mailchaos settings; run down first to change them"
		fi
		write_env
		if [[ -n $watch ]]; then start_watch "$watch"; fi
		say "already up in $DIR"
		cat "$DIR/env"
		return 0
	fi
	if any_running; then
		say "$DIR is half started; stopping it first"
		do_down >&2
	fi

	local t0=$SECONDS
	trap on_up_exit EXIT
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# Started first: if PID dies while the stack comes up, the watchdog
	# takes it down once up is done.
	if [[ -n $watch ]]; then start_watch "$watch"; fi
	S_PROFILE=${profile:-incident}
	S_CLAMD_VIA=$via
	S_MAILCHAOS=$mc
	S_SMTPD_MAXPROC=${REALSTACK_SMTPD_MAXPROC:-20}
	[[ $S_SMTPD_MAXPROC =~ ^[1-9][0-9]*$ ]] || die "REALSTACK_SMTPD_MAXPROC=$S_SMTPD_MAXPROC is not a positive number"
	pick_port S_SMTP_PORT REALSTACK_SMTP_PORT
	pick_port S_IMAP_PORT REALSTACK_IMAP_PORT
	pick_port S_CLAMD_PORT REALSTACK_CLAMD_PORT
	pick_port S_MILTER_PORT REALSTACK_MILTER_PORT
	S_PROXY_PORT=
	if [[ -n $mc ]]; then
		pick_port S_PROXY_PORT REALSTACK_PROXY_PORT
		if [[ -z $via ]]; then
			local link
			pick_port link REALSTACK_LINK_PORT
			S_CLAMD_VIA=127.0.0.1:$link
		fi
	fi

	# Folders: mail belongs to the virtual delivery user, which Dovecot
	# runs as too.
	mkdir_safe "$PF"
	mkdir_safe "$SPOOL"
	mkdir_safe "$PFDATA" 0700 postfix
	mkdir_safe "$DV"
	mkdir_safe "$DV/state"
	mkdir_safe "$CL"
	mkdir_safe "$CL/db"
	mkdir_safe "$CL/tmp" 0700 clamav
	mkdir_safe "$MAILROOT"
	mkdir_safe "$MAILDIR" 0755
	local u f
	for u in "${USERS[@]}"; do
		for f in "" /cur /new /tmp; do
			mkdir_safe "$MAILDIR/${u%%:*}$f" 0700 "$MAIL_UID:$MAIL_GID"
		done
	done
	rm -f "$CL"/db/*
	for f in "$DB_SRC"/*.ndb "$DB_SRC"/*.hdb; do
		[[ -f $f ]] || continue
		# shellcheck disable=SC2094 # reads the source, writes the copy
		put_file "$CL/db/$(basename "$f")" <"$f"
	done
	save_state
	write_configs
	touch_log "$POSTFIX_LOG"

	start_clamd
	if [[ -n $mc ]]; then start_proxy; fi
	start_milter
	start_dovecot
	start_postfix
	# A daemon that lost its port to another process exits at once; make
	# sure the ports found listening are ours.
	local d
	for d in $(wanted_daemons); do
		read_pid "$d" >/dev/null || {
			# shellcheck disable=SC2046
			tail_log $(daemon_logs "$d")
			die "$d exited after it started"
		}
	done
	write_env
	UP_DONE=1
	trap - EXIT HUP INT TERM
	say "up in $DIR (profile $S_PROFILE, $((SECONDS - t0))s)"
	cat "$DIR/env"
}

# reload_postfix: SIGHUP the master, wait until it logged the reload and
# until its processes of the old configuration are gone (idle ones exit at
# once; one busy with a session finishes it first), so that every session
# that starts after this returns runs with the new configuration.
reload_postfix() {
	local pid before end old left
	pid=$(read_pid postfix) || die "postfix is not running"
	before=$(grep -c 'reload -- version' "$POSTFIX_LOG" || true)
	# shellcheck disable=SC2207
	old=($(descendants "$pid"))
	mark_loaded postfix
	kill -HUP "$pid"
	end=$((SECONDS + TIMEOUT))
	until (($(grep -c 'reload -- version' "$POSTFIX_LOG" || true) > before)); do
		if ((SECONDS >= end)); then
			tail_log "$POSTFIX_LOG"
			die "postfix did not reload within ${TIMEOUT}s"
		fi
		sleep 0.05
	done
	end=$((SECONDS + 10))
	while :; do
		# shellcheck disable=SC2207
		left=($(alive "${old[@]}"))
		[[ ${#left[@]} -gt 0 ]] || break
		if ((SECONDS >= end)); then
			say "postfix: ${#left[@]} process(es) of the old configuration still serve sessions that started before the reload"
			break
		fi
		sleep 0.05
	done
	echo "reloaded postfix (pid $pid)"
}

cmd_apply() {
	local dir=$1 profile=''
	shift
	while [[ $# -gt 0 ]]; do
		case $1 in
		--profile) profile=${2:?--profile needs a value}; shift 2 ;;
		--profile=*) profile=${1#*=}; shift ;;
		*) die "apply: unknown argument $1" ;;
		esac
	done
	[[ -n $profile ]] || die "apply: --profile incident|remediated is required"
	need_root
	check_prereqs
	set_dir "$dir" 0 || die "$dir does not exist"
	lock
	load_state || die "no stack in $DIR: run '$PROG up $DIR' first"
	all_running || die "the stack in $DIR is not (fully) running: see '$PROG status $DIR'"
	S_PROFILE=$profile
	if [[ -n ${REALSTACK_SMTPD_MAXPROC:-} ]]; then
		[[ $REALSTACK_SMTPD_MAXPROC =~ ^[1-9][0-9]*$ ]] || die "REALSTACK_SMTPD_MAXPROC=$REALSTACK_SMTPD_MAXPROC is not a positive number"
		S_SMTPD_MAXPROC=$REALSTACK_SMTPD_MAXPROC
	fi
	write_configs
	save_state
	local d
	for d in clamd milter; do
		if stale "$d"; then
			stop_daemons "$d" >/dev/null
			"start_$d"
			echo "restarted $d (pid $(read_pid "$d"))"
		fi
	done
	if stale dovecot; then
		kill -HUP "$(read_pid dovecot)"
		mark_loaded dovecot
		echo "reloaded dovecot (pid $(read_pid dovecot))"
	fi
	if stale postfix; then reload_postfix; fi
	write_env
	say "profile $S_PROFILE applied in $DIR"
}

main() {
	[[ $# -ge 2 ]] || usage
	local cmd=$1 dir=$2
	shift 2
	case $cmd in
	up) cmd_up "$dir" "$@" ;;
	down) [[ $# -eq 0 ]] || usage; cmd_down "$dir" ;;
	status) [[ $# -eq 0 ]] || usage; cmd_status "$dir" ;;
	apply) cmd_apply "$dir" "$@" ;;
	_watch) [[ $# -eq 2 ]] || usage; cmd_watch "$dir" "$@" ;;
	*) usage ;;
	esac
}

main "$@"
