#!/usr/bin/env bash
# Compares the closed loop of `mailchaos surge` with Postfix's smtp-source,
# both sending 4 KB messages to the same Postfix smtp-sink on loopback, at
# concurrency 10 and 50, and prints messages per second side by side.
#
#   faults/loadsurge/compare-smtp-source.sh            # N=20000 messages per run
#   N=50000 REPEAT=3 faults/loadsurge/compare-smtp-source.sh
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

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
addr=127.0.0.1:$port
# smtp-sink refuses to keep root privileges: -u nobody after binding.
"$SINK" -u nobody "$addr" 1024 &
sink_pid=$!
trap 'kill "$sink_pid" 2>/dev/null; wait "$sink_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
	sleep 0.05
done

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

echo
echo "$N messages of about 4 KB per run, msg/s, best of $REPEAT; sink: $SINK on $addr; $(nproc) cores shared by sink and client"
row() { printf '%-4s %-40s %12s %12s %20s\n' "$@"; }
row c "case" smtp-source surge "surge GOMAXPROCS=1"
for c in 10 50; do
	row "$c" "the brief's commands" \
		"$(best_rate "$SOURCE" -c -l "$SIZE" -m "$N" -s "$c" "$addr")" \
		"$(best_rate surge --concurrency "$c" --size 4KB)" \
		"$(best_rate surge1 --concurrency "$c" --size 4KB)"
	row "$c" "new connection per message, same bytes" \
		"$(best_rate "$SOURCE" -l "$SIZE" -m "$N" -s "$c" "$addr")" \
		"$(best_rate surge --concurrency "$c" --size "$src_total" --per-session 1)" \
		"$(best_rate surge1 --concurrency "$c" --size "$src_total" --per-session 1)"
	row "$c" "one connection per session, same bytes" \
		"$(best_rate "$SOURCE" -d -l "$SIZE" -m "$N" -s "$c" "$addr")" \
		"$(best_rate surge --concurrency "$c" --size "$src_total" --per-session "$N")" \
		"$(best_rate surge1 --concurrency "$c" --size "$src_total" --per-session "$N")"
done
cat <<'EOF'

the brief's commands: smtp-source -c -l 4096 -m N -s C (a new connection per message, 4210 bytes)
  against surge --rate 0 --concurrency C --size 4KB --count N (10 messages per session, 4000 bytes)
EOF
