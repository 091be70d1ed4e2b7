#!/usr/bin/env bash
# Compares the closed loop of `mailchaos surge` with Postfix's smtp-source,
# both sending 4 KB messages to the same Postfix smtp-sink on loopback, at
# concurrency 10 and 50, and prints messages per second side by side.
#
#   faults/loadsurge/compare-smtp-source.sh            # N=20000 messages per run
#   N=50000 REPEAT=3 faults/loadsurge/compare-smtp-source.sh
#   LIKE_ONLY=1 faults/loadsurge/compare-smtp-source.sh    # only the like-for-like rows
#   NOPIPELINING=1 faults/loadsurge/compare-smtp-source.sh # also against smtp-sink -p
#
# If smtp-source or smtp-sink is missing it installs Debian's postfix package
# (as root), with "No configuration" preseeded and service starts refused,
# so Postfix's own daemon never runs. Every figure is the wall time of the
# whole client process, start-up included, for N messages; the best of
# REPEAT runs is printed.
set -euo pipefail

N=${N:-20000}
REPEAT=${REPEAT:-3}
SIZE=4096 # smtp-source -l: body bytes; surge --size counts headers too (see below)

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

find_tool() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

install_postfix() {
	echo "installing postfix for smtp-source and smtp-sink (its daemon is not started)" >&2
	local made_policy=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
		made_policy=1
	fi
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
	[ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
	# Belt and braces: if the package started Postfix anyway, stop it.
	if [ -s /var/spool/postfix/pid/master.pid ] && kill -0 "$(tr -d ' ' </var/spool/postfix/pid/master.pid)" 2>/dev/null; then
		postfix stop || true
	fi
}

SOURCE=$(find_tool smtp-source)
SINK=$(find_tool smtp-sink)
if [ -z "$SOURCE" ] || [ -z "$SINK" ]; then
	install_postfix
	SOURCE=$(find_tool smtp-source)
	SINK=$(find_tool smtp-sink)
fi

echo "building bin/mailchaos" >&2
go build -o bin/mailchaos .

# start_sink [FLAGS...]: starts smtp-sink on a free loopback port, sets addr
# and appends its pid to sink_pids.
sink_pids=()
trap 'for p in "${sink_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done' EXIT
start_sink() {
	local port
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	addr=127.0.0.1:$port
	# smtp-sink refuses to keep root privileges: -u nobody after binding.
	"$SINK" "$@" -u nobody "$addr" 1024 &
	sink_pids+=($!)
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
		sleep 0.05
	done
}

# smtp-source -l 4096 sends 4210 bytes after DATA: 110 bytes of From, To,
# Date and Message-Id headers, then 53 lines of body (measured with
# smtp-sink -d on Postfix 3.7). surge --size is the whole message, so the
# rows with --size $src_total send the same bytes; "4KB" (4000) is the
# brief's command.
src_total=4210

# best_rate CMD...: runs CMD REPEAT times and prints the best msg/s.
best_rate() {
	local best=0 t0 t1 rate
	for _ in $(seq "$REPEAT"); do
		t0=$(date +%s.%N)
		"$@" >/dev/null
		t1=$(date +%s.%N)
		rate=$(echo "$N / ($t1 - $t0)" | bc -l)
		best=$(echo "if ($rate > $best) $rate else $best" | bc -l)
	done
	printf '%.0f' "$best"
}

surge() { bin/mailchaos surge --to "$addr" --rate 0 --count "$N" --json "$@"; }
surge1() { GOMAXPROCS=1 surge "$@"; }
row() { printf '%-4s %-48s %12s %12s %20s\n' "$@"; }

# table TITLE: prints the rows against the sink at $addr.
table() {
	echo
	echo "$1"
	row c "case (smtp-source / surge)" smtp-source surge "surge GOMAXPROCS=1"
	local c reuse
	for c in 10 50; do
		# Like for like: the same bytes per message, and the same use of
		# connections (smtp-source -d never reconnects; surge's default
		# reconnects every 10 messages, --per-session N never).
		reuse=$(best_rate "$SOURCE" -d -l "$SIZE" -m "$N" -s "$c" "$addr")
		row "$c" "reused connection: -d / default (10 per session)" "$reuse" \
			"$(best_rate surge --concurrency "$c" --size "$src_total")" \
			"$(best_rate surge1 --concurrency "$c" --size "$src_total")"
		row "$c" "reused connection: -d / --per-session N" "$reuse" \
			"$(best_rate surge --concurrency "$c" --size "$src_total" --per-session "$N")" \
			"$(best_rate surge1 --concurrency "$c" --size "$src_total" --per-session "$N")"
		row "$c" "connection per message: default / --per-session 1" \
			"$(best_rate "$SOURCE" -l "$SIZE" -m "$N" -s "$c" "$addr")" \
			"$(best_rate surge --concurrency "$c" --size "$src_total" --per-session 1)" \
			"$(best_rate surge1 --concurrency "$c" --size "$src_total" --per-session 1)"
		if [ -z "${LIKE_ONLY:-}" ]; then
			row "$c" "the brief's commands (not like for like)" \
				"$(best_rate "$SOURCE" -c -l "$SIZE" -m "$N" -s "$c" "$addr")" \
				"$(best_rate surge --concurrency "$c" --size 4KB)" \
				"$(best_rate surge1 --concurrency "$c" --size 4KB)"
		fi
	done
}

start_sink
table "$N messages of about 4 KB per run, msg/s, best of $REPEAT; sink: $SINK on $addr (PIPELINING advertised); $(nproc) cores shared by sink and client"
if [ -n "${NOPIPELINING:-}" ]; then
	start_sink -p
	LIKE_ONLY=1 table "the same against smtp-sink -p on $addr: no PIPELINING, so surge waits for every reply too"
fi
cat <<'EOF2'

smtp-source has no command pipelining ("BUGS: No SMTP command pipelining support"): it waits for
the reply to every command. surge pipelines (RFC 2920) when the server advertises PIPELINING, as
smtp-sink does unless -p: MAIL, RCPT and DATA in one write, then the body, the dot and the next
message's MAIL, RCPT and DATA (or QUIT) in another. NOPIPELINING=1 adds a table against smtp-sink -p.

the brief's commands: smtp-source -c -l 4096 -m N -s C (a new connection per message, 4210 bytes)
  against surge --rate 0 --concurrency C --size 4KB --count N (10 messages per session, 4000 bytes)
EOF2
