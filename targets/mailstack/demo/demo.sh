#!/usr/bin/env bash
# Starts the embedded reference mail stack, sends one clean and one
# EICAR-infected message with Python's smtplib, reads bob's mailbox and the
# quarantine with imaplib, prints what happened, and stops the stack.
set -euo pipefail
bin=${1:-bin/mailchaos}
out=$(mktemp)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$out"' EXIT

"$bin" --log-level warn target serve mailstack --smtp 127.0.0.1:0 --imap 127.0.0.1:0 --metrics 127.0.0.1:0 >"$out" &
pid=$!
for _ in $(seq 100); do
  grep -q '^av-engine-3=' "$out" && break
  kill -0 "$pid" 2>/dev/null || { echo "the mail stack did not start"; exit 1; }
  sleep 0.1
done
echo "== mailchaos target serve mailstack is up:"
sed 's/^/   /' "$out"
smtp=$(sed -n 's/^smtp=//p' "$out")
imap=$(sed -n 's/^imap=//p' "$out")
metrics=$(sed -n 's/^metrics=//p' "$out")

if ! command -v python3 >/dev/null; then
  echo "python3 is not installed; send mail to $smtp with any SMTP client (swaks --server $smtp --to bob@example.test)."
  exit 0
fi
SMTP=$smtp IMAP=$imap METRICS=$metrics python3 - <<'PY'
import imaplib, os, smtplib, time, urllib.request
from email.message import EmailMessage

smtp_host, smtp_port = os.environ["SMTP"].rsplit(":", 1)
imap_host, imap_port = os.environ["IMAP"].rsplit(":", 1)
eicar = r"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

def send(subject, body):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "alice@example.test", "bob@example.test", subject
    m.set_content(body)
    with smtplib.SMTP(smtp_host, int(smtp_port)) as s:
        s.send_message(m)
    print(f"== sent {subject!r} from alice to bob over SMTP")

send("hello bob", "A clean message.")
send("infected", "This carries the EICAR test string:\n" + eicar)
time.sleep(1)

def subjects(user):
    with imaplib.IMAP4(imap_host, int(imap_port)) as c:
        c.login(user, "password")
        c.select("INBOX")
        _, data = c.search(None, "ALL")
        out = []
        for num in data[0].split():
            _, msg = c.fetch(num, "(BODY[HEADER.FIELDS (SUBJECT X-MAILCHAOS-QUARANTINE)])")
            out.append(" | ".join(l.strip() for l in msg[0][1].decode().splitlines() if l.strip()))
        return out

print("== bob@example.test INBOX over IMAP:")
for s in subjects("bob@example.test"):
    print("   ", s)
print("== quarantine@example.test INBOX over IMAP:")
for s in subjects("quarantine@example.test"):
    print("   ", s)
print("== metrics (http://%s/metrics):" % os.environ["METRICS"])
for line in urllib.request.urlopen("http://%s/metrics" % os.environ["METRICS"]).read().decode().splitlines():
    if line.startswith(("mailstack_delivered_total", "mailstack_quarantined_total{reason=\"virus\"}", "mailstack_queue_depth")):
        print("   ", line)
PY
