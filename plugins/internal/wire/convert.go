package wire

import (
	"errors"
	"time"

	"github.com/mailchaos/mailchaos/faults"
	"github.com/mailchaos/mailchaos/plugins/proto"
)

// SpecToProto converts a spec to its message.
func SpecToProto(s faults.Spec) *proto.Spec {
	out := &proto.Spec{Name: s.Name, Summary: s.Summary, NeedsLink: s.NeedsLink, Toxics: s.Toxics}
	for _, p := range s.Params {
		pp := &proto.Param{Name: p.Name, Type: string(p.Type), Unit: p.Unit, Default: p.Default,
			Required: p.Required, Min: p.Min, Max: p.Max, Enum: p.Enum, Doc: p.Doc}
		for v, ts := range p.Toxics {
			if pp.Toxics == nil {
				pp.Toxics = map[string]*proto.ToxicTypes{}
			}
			pp.Toxics[v] = &proto.ToxicTypes{Types: ts}
		}
		out.Params = append(out.Params, pp)
	}
	return out
}

// SpecFromProto converts a spec message.
func SpecFromProto(s *proto.Spec) faults.Spec {
	out := faults.Spec{Name: s.GetName(), Summary: s.GetSummary(), NeedsLink: s.GetNeedsLink(), Toxics: s.GetToxics()}
	for _, p := range s.GetParams() {
		fp := faults.Param{Name: p.GetName(), Type: faults.Type(p.GetType()), Unit: p.GetUnit(),
			Default: p.GetDefault(), Required: p.GetRequired(), Min: p.GetMin(), Max: p.GetMax(), Enum: p.GetEnum(), Doc: p.GetDoc()}
		for v, ts := range p.GetToxics() {
			if fp.Toxics == nil {
				fp.Toxics = map[string][]string{}
			}
			fp.Toxics[v] = ts.GetTypes()
		}
		out.Params = append(out.Params, fp)
	}
	return out
}

// RequestToProto converts a request to its message.
func RequestToProto(r faults.Request) *proto.Request {
	t := &proto.Target{Endpoints: r.Target.Endpoints, Toxiproxy: r.Target.Toxiproxy}
	for _, l := range r.Target.Links {
		t.Links = append(t.Links, &proto.Link{Name: l.Name, Listen: l.Listen, Upstream: l.Upstream, Toxiproxy: l.Toxiproxy})
	}
	for _, u := range r.Target.Users {
		// users carries the addresses alone, for plugins that predate
		// accounts.
		t.Users = append(t.Users, u.Address)
		t.Accounts = append(t.Accounts, &proto.User{Address: u.Address, Login: u.Login, Password: u.Password})
	}
	return &proto.Request{Id: r.ID, Owner: r.Owner, Fault: r.Fault, Target: t, Links: r.Links, Params: r.Params,
		DurationNs: int64(r.Duration), TtlNs: int64(r.TTL)}
}

// RequestFromProto converts a request message.
func RequestFromProto(r *proto.Request) faults.Request {
	t := r.GetTarget()
	out := faults.Request{ID: r.GetId(), Owner: r.GetOwner(), Fault: r.GetFault(), Links: r.GetLinks(),
		Params: faults.Params(r.GetParams()), Duration: time.Duration(r.GetDurationNs()), TTL: time.Duration(r.GetTtlNs()),
		Target: faults.Target{Endpoints: t.GetEndpoints(), Toxiproxy: t.GetToxiproxy()}}
	for _, l := range t.GetLinks() {
		out.Target.Links = append(out.Target.Links, faults.Link{Name: l.GetName(), Listen: l.GetListen(), Upstream: l.GetUpstream(),
			Toxiproxy: l.GetToxiproxy()})
	}
	if accts := t.GetAccounts(); len(accts) > 0 {
		for _, u := range accts {
			out.Target.Users = append(out.Target.Users, faults.User{Address: u.GetAddress(), Login: u.GetLogin(), Password: u.GetPassword()})
		}
	} else {
		// A host that predates accounts: addresses with the default log-in.
		for _, a := range t.GetUsers() {
			out.Target.Users = append(out.Target.Users, faults.User{Address: a})
		}
	}
	if out.Params == nil {
		out.Params = faults.Params{}
	}
	if out.Target.Endpoints == nil {
		out.Target.Endpoints = map[string]string{}
	}
	return out
}

// HandleToProto converts a handle to its message.
func HandleToProto(h faults.Handle) *proto.Handle {
	out := &proto.Handle{Id: h.ID, Fault: h.Fault, Owner: h.Owner, Toxiproxy: h.Toxiproxy, Servers: h.Servers,
		InjectedUnixNano: unixNano(h.Injected), ExpiresUnixNano: unixNano(h.Expires), Data: h.Data}
	for _, t := range h.Toxics {
		out.Toxics = append(out.Toxics, &proto.ToxicRef{Proxy: t.Proxy, Name: t.Name, Toxiproxy: t.Toxiproxy})
	}
	return out
}

// HandleFromProto converts a handle message.
func HandleFromProto(h *proto.Handle) faults.Handle {
	out := faults.Handle{ID: h.GetId(), Fault: h.GetFault(), Owner: h.GetOwner(), Toxiproxy: h.GetToxiproxy(), Servers: h.GetServers(),
		Injected: fromUnixNano(h.GetInjectedUnixNano()), Expires: fromUnixNano(h.GetExpiresUnixNano()), Data: h.GetData()}
	for _, t := range h.GetToxics() {
		out.Toxics = append(out.Toxics, faults.ToxicRef{Proxy: t.GetProxy(), Name: t.GetName(), Toxiproxy: t.GetToxiproxy()})
	}
	return out
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// StatusToProto converts a status to its message.
func StatusToProto(s faults.Status) *proto.Status {
	return &proto.Status{Active: s.Active, Figures: s.Figures, Detail: s.Detail}
}

// StatusFromProto converts a status message.
func StatusFromProto(s *proto.Status) faults.Status {
	return faults.Status{Active: s.GetActive(), Figures: s.GetFigures(), Detail: s.GetDetail()}
}

// invalidInput is what the cli's exit-code table looks for.
type invalidInput interface{ InvalidInput() bool }

// ErrorToProto converts an error an injector returned; nil stays nil.
func ErrorToProto(err error) *proto.Error {
	if err == nil {
		return nil
	}
	out := &proto.Error{Kind: proto.Error_FAILED, Message: err.Error()}
	var rb *faults.RollbackError
	if errors.As(err, &rb) {
		out.Kind, out.Handle = proto.Error_ROLLBACK, HandleToProto(rb.Handle)
		out.Message = rb.Err.Error()
		return out
	}
	var ii invalidInput
	if !errors.As(err, &ii) || !ii.InvalidInput() {
		return out
	}
	out.Kind = proto.Error_INVALID
	for _, e := range faults.Flatten(err) {
		var pe *faults.ParamError
		if errors.As(e, &pe) {
			out.Params = append(out.Params, &proto.ParamProblem{Fault: pe.Fault, Param: pe.Param, Value: pe.Value, Msg: pe.Msg, Allowed: pe.Allowed})
			continue
		}
		out.Problems = append(out.Problems, e.Error())
	}
	return out
}

// RemoteError is an error a plugin reported about a request.
type RemoteError struct {
	// Kind says what went wrong.
	Kind proto.Error_Kind
	// Msg is the plugin's message.
	Msg string
}

func (e *RemoteError) Error() string { return e.Msg }

// InvalidInput is true for a request the plugin found invalid (exit 2).
func (e *RemoteError) InvalidInput() bool { return e.Kind == proto.Error_INVALID }

// Panicked is true when the plugin panicked while serving the call.
func (e *RemoteError) Panicked() bool { return e.Kind == proto.Error_PANIC }

// ErrorFromProto rebuilds an error a plugin reported: invalid parameters
// become [*faults.ParamError]s (joined with the other problems), a failed
// removal a [*faults.RollbackError], anything else a [*RemoteError].
func ErrorFromProto(e *proto.Error) error {
	if e == nil {
		return nil
	}
	switch e.GetKind() {
	case proto.Error_ROLLBACK:
		return &faults.RollbackError{Handle: HandleFromProto(e.GetHandle()), Err: errors.New(e.GetMessage())}
	case proto.Error_INVALID:
		var errs []error
		for _, p := range e.GetParams() {
			errs = append(errs, &faults.ParamError{Fault: p.GetFault(), Param: p.GetParam(), Value: p.GetValue(), Msg: p.GetMsg(), Allowed: p.GetAllowed()})
		}
		for _, p := range e.GetProblems() {
			errs = append(errs, &RemoteError{Kind: proto.Error_INVALID, Msg: p})
		}
		if len(errs) == 0 {
			errs = append(errs, &RemoteError{Kind: proto.Error_INVALID, Msg: e.GetMessage()})
		}
		return errors.Join(errs...)
	}
	return &RemoteError{Kind: e.GetKind(), Msg: e.GetMessage()}
}
