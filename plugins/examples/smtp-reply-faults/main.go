// Command mailchaos-fault-smtp-reply-faults is a mailchaos fault plugin
// that speaks SMTP: it sits on a link in front of an SMTP server and
// answers a chosen share of a chosen command (MAIL, RCPT, DATA, ...) with a
// chosen 4xx or 5xx reply, without the server ever seeing the command, or
// holds the greeting back (a tarpit).
package main

import "github.com/mailchaos/mailchaos/plugins/sdk"

func main() {
	sdk.Serve(New())
}
