package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"time"
)

// relay carries one SMTP session between client and server, command by
// command, answering the chosen command itself when the dice say so. It
// takes PIPELINING and CHUNKING out of the server's EHLO reply, so that the
// client sends one command at a time and replies stay in order.
func relay(ctx context.Context, cfg config, c *counters, client, server net.Conn) {
	cr, sr := bufio.NewReader(client), bufio.NewReader(server)
	hit := func() bool {
		c.seen.Add(1)
		if rand.Float64() < cfg.fraction {
			c.faulted.Add(1)
			return true
		}
		return false
	}
	fault := func() bool {
		_, err := fmt.Fprintf(client, "%d %s\r\n", cfg.code, cfg.text)
		return err == nil && cfg.code != 421
	}
	greeting, err := readReply(sr)
	if err != nil {
		return
	}
	if cfg.tarpit > 0 {
		t := time.NewTimer(cfg.tarpit)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if cfg.command == "greeting" && hit() {
		fault()
		return // a refused greeting ends the session
	}
	if _, err := client.Write([]byte(strings.Join(greeting, ""))); err != nil {
		return
	}
	for {
		line, err := cr.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.TrimSpace(strings.SplitN(strings.TrimSpace(line), " ", 2)[0]))
		if matches(cfg.command, verb) && hit() {
			if !fault() {
				return
			}
			continue
		}
		if _, err := server.Write([]byte(line)); err != nil {
			return
		}
		reply, err := readReply(sr)
		if err != nil {
			return
		}
		if verb == "EHLO" {
			reply = withoutExtensions(reply, "PIPELINING", "CHUNKING")
		}
		if _, err := client.Write([]byte(strings.Join(reply, ""))); err != nil {
			return
		}
		switch {
		case verb == "DATA" && strings.HasPrefix(reply[0], "354"):
			if !relayBody(cr, sr, client, server) {
				return
			}
		case verb == "QUIT":
			return
		}
	}
}

// matches reports whether verb is the command the fault answers.
func matches(command, verb string) bool {
	switch command {
	case "helo":
		return verb == "HELO" || verb == "EHLO"
	case "greeting":
		return false
	}
	return verb == strings.ToUpper(command)
}

// relayBody copies a message body up to the lone dot, then the server's
// reply.
func relayBody(cr, sr *bufio.Reader, client, server net.Conn) bool {
	for {
		line, err := cr.ReadString('\n')
		if err != nil {
			return false
		}
		if _, err := server.Write([]byte(line)); err != nil {
			return false
		}
		if line == ".\r\n" || line == ".\n" {
			break
		}
	}
	reply, err := readReply(sr)
	if err != nil {
		return false
	}
	_, err = client.Write([]byte(strings.Join(reply, "")))
	return err == nil
}

// readReply reads one SMTP reply: lines "NNN-text" up to "NNN text".
func readReply(r *bufio.Reader) ([]string, error) {
	var lines []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
}

// withoutExtensions drops the named extensions from an EHLO reply.
func withoutExtensions(reply []string, drop ...string) []string {
	var texts []string
	code := "250"
	for i, l := range reply {
		if len(l) < 4 {
			return reply
		}
		code = l[:3]
		text := strings.TrimRight(l[4:], "\r\n")
		kw := strings.ToUpper(strings.Fields(text + " x")[0])
		if i > 0 && slices.Contains(drop, kw) {
			continue
		}
		texts = append(texts, text)
	}
	out := make([]string, len(texts))
	for i, t := range texts {
		sep := "-"
		if i == len(texts)-1 {
			sep = " "
		}
		out[i] = code + sep + t + "\r\n"
	}
	return out
}
