package mailstack

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The spool keeps acknowledged mail across a restart. When the stack stops
// with messages still queued (accepted, not yet delivered, quarantined or
// bounced), it writes them to one file in the spool directory; the next
// Start with the same directory takes them back into the queue and removes
// the file.
//
// A spool file is named mailstack-<time>-<pid>.spool and holds JSON lines:
// a header {"mailchaos_spool":1}, one {"record":…,"data":…} line per message
// (its ledger record and its bytes as stored, base64), and a trailer
// {"end":N} with the number of messages. It is written under a .tmp name
// (created 0600 with O_EXCL|O_NOFOLLOW), synced, then renamed, so a file
// with the .spool suffix is complete. A file without its trailer, with a
// wrong count, a line longer than a message can make, or larger than
// spoolMaxBytes is refused with an error, and so is a directory that is a
// symlink or writable by group or others.

// spoolMaxBytes bounds one spool file, written or read.
const spoolMaxBytes = 1 << 30

// spoolVersion is the format version in a spool file's header.
const spoolVersion = 1

// spoolSuffix ends the name of every complete spool file.
const spoolSuffix = ".spool"

// SpoolStatus says what a stack took from its spool when it started and
// what became of the messages it still held when it stopped.
type SpoolStatus struct {
	// Dir is the spool directory, "" when none is configured.
	Dir string `json:"dir,omitempty"`
	// Resumed counts the messages taken back from the spool at Start.
	Resumed int `json:"resumed"`
	// Spooled counts the messages written to the spool when the stack
	// stopped, in File.
	Spooled int    `json:"spooled"`
	File    string `json:"file,omitempty"`
	// Unspooled counts the acknowledged messages still queued when the
	// stack stopped that no spool holds: no spool is configured, or
	// writing it failed. They are lost when the process exits.
	Unspooled int `json:"unspooled"`
}

// spoolLine is one line of a spool file: the header, a message or the
// trailer.
type spoolLine struct {
	Version int     `json:"mailchaos_spool,omitempty"`
	Record  *Record `json:"record,omitempty"`
	Data    []byte  `json:"data,omitempty"`
	End     *int    `json:"end,omitempty"`
}

// spoolEntry is one spooled message.
type spoolEntry struct {
	rec  Record
	data []byte
}

// checkSpoolDir creates dir (0700) when it does not exist and refuses one
// that is a symlink, not a directory, or writable by group or others.
func checkSpoolDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create spool directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("spool directory: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("spool directory %s is a symlink; give its target instead", dir)
	case !fi.IsDir():
		return fmt.Errorf("spool directory %s is not a directory", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("spool directory %s is writable by group or others (mode %v); chmod go-w it", dir, fi.Mode().Perm())
	}
	// Mail read back from it is mail acknowledged by this stack: the
	// directory must be ours, not another user's who could plant some.
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("spool directory %s belongs to user %d, not to this process's user %d", dir, sys.Uid, os.Geteuid())
	}
	return nil
}

// spoolFiles lists the complete spool files in dir, oldest name first.
func spoolFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read spool directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "mailstack-") && strings.HasSuffix(e.Name(), spoolSuffix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// readSpoolFile reads one spool file; maxLine bounds each line.
func readSpoolFile(path string, maxLine int) ([]spoolEntry, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open spool file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("spool file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("spool file %s is not a regular file", path)
	}
	if fi.Size() > spoolMaxBytes {
		return nil, fmt.Errorf("spool file %s is %d bytes, more than the limit of %d", path, fi.Size(), spoolMaxBytes)
	}
	entries, err := parseSpool(io.LimitReader(f, spoolMaxBytes+1), maxLine)
	if err != nil {
		return nil, fmt.Errorf("spool file %s: %w", path, err)
	}
	return entries, nil
}

// parseSpool decodes a spool file's content.
func parseSpool(r io.Reader, maxLine int) ([]spoolEntry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	var (
		entries []spoolEntry
		seen    = map[string]bool{}
		n       int
		ended   bool
	)
	for sc.Scan() {
		n++
		if ended {
			return nil, fmt.Errorf("line %d: data after the trailer", n)
		}
		var l spoolLine
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("line %d: corrupt: %w", n, err)
		}
		switch {
		case n == 1:
			if l.Version != spoolVersion {
				return nil, fmt.Errorf("line 1: not a version %d spool header", spoolVersion)
			}
		case l.End != nil:
			if *l.End != len(entries) {
				return nil, fmt.Errorf("line %d: trailer counts %d messages, the file holds %d", n, *l.End, len(entries))
			}
			ended = true
		case l.Record != nil:
			rec := *l.Record
			switch {
			case rec.QueueID == "":
				return nil, fmt.Errorf("line %d: message without a queue ID", n)
			case seen[rec.QueueID]:
				return nil, fmt.Errorf("line %d: queue ID %s appears twice", n, rec.QueueID)
			case len(rec.To) == 0:
				return nil, fmt.Errorf("line %d: message %s has no recipient", n, rec.QueueID)
			case len(l.Data) == 0:
				return nil, fmt.Errorf("line %d: message %s has no content", n, rec.QueueID)
			}
			seen[rec.QueueID] = true
			entries = append(entries, spoolEntry{rec: rec, data: l.Data})
		default:
			return nil, fmt.Errorf("line %d: neither a message nor the trailer", n)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes, more than a message can be", n+1, maxLine)
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	if !ended {
		return nil, errors.New("truncated: no trailer")
	}
	return entries, nil
}

// writeSpool writes entries to a new spool file in dir and returns its
// path. Entries that would take the file past spoolMaxBytes are left out:
// written reports how many went in, and the error says how many did not.
func writeSpool(dir string, entries []spoolEntry) (path string, written int, err error) {
	name := fmt.Sprintf("mailstack-%s-%d%s", time.Now().UTC().Format("20060102T150405.000000000Z"), os.Getpid(), spoolSuffix)
	path = filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", 0, fmt.Errorf("create spool file: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
			written = 0
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	size := 0
	put := func(l spoolLine) (int, error) {
		b, err := json.Marshal(l)
		if err != nil {
			return 0, fmt.Errorf("encode spool line: %w", err)
		}
		b = append(b, '\n')
		if _, err := w.Write(b); err != nil {
			return 0, fmt.Errorf("write spool file: %w", err)
		}
		return len(b), nil
	}
	if size, err = put(spoolLine{Version: spoolVersion}); err != nil {
		return "", 0, err
	}
	const trailerRoom = 64
	for i := range entries {
		rec := entries[i].rec
		b, err := json.Marshal(spoolLine{Record: &rec, Data: entries[i].data})
		if err != nil {
			return "", 0, fmt.Errorf("encode spool line: %w", err)
		}
		if size+len(b)+1+trailerRoom > spoolMaxBytes {
			break
		}
		if _, err := w.Write(append(b, '\n')); err != nil {
			return "", 0, fmt.Errorf("write spool file: %w", err)
		}
		size += len(b) + 1
		written++
	}
	end := written
	if _, err = put(spoolLine{End: &end}); err != nil {
		return "", 0, err
	}
	if err = w.Flush(); err != nil {
		return "", 0, fmt.Errorf("write spool file: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", 0, fmt.Errorf("sync spool file: %w", err)
	}
	if err = f.Close(); err != nil {
		return "", 0, fmt.Errorf("close spool file: %w", err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return "", 0, fmt.Errorf("rename spool file: %w", err)
	}
	committed = true
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	if written < len(entries) {
		return path, written, fmt.Errorf("spool file %s is full at %d bytes: %d of %d messages left out",
			path, spoolMaxBytes, len(entries)-written, len(entries))
	}
	return path, written, nil
}

// spoolMaxLine is the longest line a spool file of this configuration can
// hold: a message of the largest size SMTP accepts, with the stack's
// headers, in base64, plus its record.
func (s *Stack) spoolMaxLine() int {
	n := s.cfg.SMTP.MaxMessageBytes + 1<<20
	if n > spoolMaxBytes {
		n = spoolMaxBytes
	}
	return int(n/3*4) + 1<<16
}

// loadSpool checks the spool directory and reads every spool file in it.
// Called by Start before anything listens.
func (s *Stack) loadSpool() error {
	if s.cfg.Spool == "" {
		return nil
	}
	if err := checkSpoolDir(s.cfg.Spool); err != nil {
		return fmt.Errorf("mailstack: %w", err)
	}
	files, err := spoolFiles(s.cfg.Spool)
	if err != nil {
		return fmt.Errorf("mailstack: %w", err)
	}
	seen := map[string]bool{}
	var all []spoolEntry
	for _, p := range files {
		entries, err := readSpoolFile(p, s.spoolMaxLine())
		if err != nil {
			return fmt.Errorf("mailstack: refusing the spool: %w", err)
		}
		for _, e := range entries {
			if seen[e.rec.QueueID] {
				return fmt.Errorf("mailstack: refusing the spool: queue ID %s is in two files", e.rec.QueueID)
			}
			seen[e.rec.QueueID] = true
		}
		all = append(all, entries...)
	}
	s.spoolIn, s.spoolInFiles = all, files
	return nil
}

// resumeSpool puts the messages read by loadSpool back in the ledger and
// the queue, then removes their files. From here on, whatever the queue
// holds when the stack stops goes back to the spool.
func (s *Stack) resumeSpool() error {
	for _, e := range s.spoolIn {
		rec := e.rec
		rec.State, rec.Reason, rec.Signature, rec.Finished = StateQueued, "", "", time.Time{}
		msg := &message{queueID: rec.QueueID, from: rec.From, to: append([]string(nil), rec.To...),
			data: e.data, accepted: rec.Accepted, deferrals: rec.Deferrals}
		s.ledger.add(rec)
		s.metrics.queueDepth.Inc()
		s.metrics.resumed.Inc()
		s.queue.push(msg)
	}
	s.spoolMu.Lock()
	s.spoolStatus.Dir = s.cfg.Spool
	s.spoolStatus.Resumed = len(s.spoolIn)
	s.spoolMu.Unlock()
	if len(s.spoolIn) > 0 {
		s.log.Info("resumed spooled mail", "messages", len(s.spoolIn), "files", len(s.spoolInFiles))
	}
	s.spoolIn = nil
	// The files go before the stack may spool again: a stop must never
	// find the same messages in an old file and a new one.
	for _, p := range s.spoolInFiles {
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("mailstack: remove resumed spool file: %w", err)
		}
	}
	s.spoolInFiles = nil
	s.spoolArmed = true
	return nil
}

// spoolQueued takes every message the queue still holds, once no worker
// runs, and writes it to the spool; without a spool directory they are
// counted as unspooled. It runs once per stack.
func (s *Stack) spoolQueued() error {
	var err error
	s.spoolOnce.Do(func() { err = s.spoolQueuedOnce() })
	return err
}

func (s *Stack) spoolQueuedOnce() error {
	msgs := s.queue.remaining()
	if len(msgs) == 0 {
		return nil
	}
	sort.SliceStable(msgs, func(i, j int) bool { return msgs[i].accepted.Before(msgs[j].accepted) })
	if s.cfg.Spool == "" {
		s.spoolMu.Lock()
		s.spoolStatus.Unspooled = len(msgs)
		s.spoolMu.Unlock()
		s.log.Warn("acknowledged mail not delivered and no spool configured", "messages", len(msgs))
		return nil
	}
	entries := make([]spoolEntry, 0, len(msgs))
	for _, m := range msgs {
		rec, ok := s.ledger.get(m.queueID)
		if !ok {
			rec = Record{QueueID: m.queueID, From: m.from, To: m.to, Size: len(m.data), Accepted: m.accepted}
		}
		rec.Deferrals = m.deferrals
		entries = append(entries, spoolEntry{rec: rec, data: m.data})
	}
	path, n, err := writeSpool(s.cfg.Spool, entries)
	s.metrics.spooled.Add(float64(n))
	s.spoolMu.Lock()
	s.spoolStatus.Dir, s.spoolStatus.Spooled, s.spoolStatus.Unspooled = s.cfg.Spool, n, len(msgs)-n
	if n > 0 {
		s.spoolStatus.File = path
	}
	s.spoolMu.Unlock()
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.log.Info("spooled queued mail", "messages", n, "file", path)
	return nil
}

// Spool reports what the stack took from its spool at Start and, once it
// has stopped, what became of the acknowledged messages it still held.
func (s *Stack) Spool() SpoolStatus {
	s.spoolMu.Lock()
	defer s.spoolMu.Unlock()
	st := s.spoolStatus
	st.Dir = s.cfg.Spool
	return st
}
