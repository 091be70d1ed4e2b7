package faults_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/faults"
)

func TestParsers(t *testing.T) {
	for _, tt := range []struct {
		typ  faults.Type
		in   string
		want float64
	}{
		{faults.TypeSize, "512", 512}, {faults.TypeSize, "4KB", 4000}, {faults.TypeSize, "4KiB", 4096},
		{faults.TypeSize, "1mib", 1 << 20}, {faults.TypeRate, "300/s", 300}, {faults.TypeRate, "300", 300},
		{faults.TypeRate, "1800/m", 30}, {faults.TypeFraction, "30%", 0.3}, {faults.TypeFraction, "0.25", 0.25},
		{faults.TypeDuration, "250ms", float64(250 * time.Millisecond)}, {faults.TypeInt, "7", 7},
	} {
		got, err := faults.ParseNumber(tt.typ, tt.in)
		require.NoError(t, err, "%s %q", tt.typ, tt.in)
		require.InDelta(t, tt.want, got, 1e-9, "%s %q", tt.typ, tt.in)
	}
	for _, tt := range []struct {
		typ faults.Type
		in  string
	}{{faults.TypeSize, "lots"}, {faults.TypeSize, "-1"}, {faults.TypeRate, "3/fortnight"}, {faults.TypeFraction, "150%"},
		{faults.TypeDuration, "5"}, {faults.TypeInt, "1.5"}, {faults.TypeFloat, "NaN"}} {
		_, err := faults.ParseNumber(tt.typ, tt.in)
		require.Error(t, err, "%s %q", tt.typ, tt.in)
	}
}

func TestCheckCollectsEveryError(t *testing.T) {
	spec := faults.Spec{Name: "f", Params: []faults.Param{
		{Name: "mode", Type: faults.TypeEnum, Enum: []string{"a", "b"}, Required: true},
		{Name: "latency", Type: faults.TypeDuration, Default: "1s", Min: "0s", Max: "10s"},
		{Name: "on", Type: faults.TypeBool},
	}}
	v, errs := faults.Check(spec, faults.Params{"latncy": "1s", "latency": "1m", "on": "yes"})
	require.Len(t, errs, 4)
	require.EqualError(t, errs[0], `f: parameter latncy: unknown parameter; did you mean "latency"? (valid: mode, latency, on)`)
	require.EqualError(t, errs[1], `f: parameter mode: is required (one of a, b)`)
	require.EqualError(t, errs[2], `f: parameter latency = "1m": above the maximum 10s (a duration such as 250ms or 8s from 0s to 10s)`)
	require.EqualError(t, errs[3], `f: parameter on = "yes": not true or false (true or false)`)
	var pe *faults.ParamError
	require.True(t, errors.As(errs[0], &pe))
	require.Equal(t, "latncy", pe.Param)

	v, errs = faults.Check(spec, faults.Params{"mode": "b"})
	require.Empty(t, errs)
	require.Equal(t, time.Second, v.Duration("latency"), "the default applies")
	require.Equal(t, "b", v.String("mode"))
	require.False(t, v.Bool("on"))
}

type fake struct{ name string }

func (f fake) Describe(context.Context) (faults.Spec, error) { return faults.Spec{Name: f.name}, nil }
func (fake) Validate(context.Context, faults.Request) error  { return nil }
func (fake) Inject(context.Context, faults.Request) (faults.Handle, error) {
	return faults.Handle{}, nil
}
func (fake) Remove(context.Context, faults.Handle) error { return nil }
func (fake) Status(context.Context, faults.Handle) (faults.Status, error) {
	return faults.Status{}, nil
}

func TestRegistry(t *testing.T) {
	r := faults.NewRegistry()
	require.NoError(t, r.Add(context.Background(), fake{"gray-failure"}))
	require.NoError(t, r.Add(context.Background(), fake{"av-latency"}))
	require.ErrorContains(t, r.Add(context.Background(), fake{"av-latency"}), "registered twice")
	require.Equal(t, []string{"av-latency", "gray-failure"}, r.Names())
	_, _, err := r.Get("grey-failure")
	require.EqualError(t, err, `unknown fault "grey-failure"; did you mean "gray-failure"? (known: av-latency, gray-failure)`)
	var ue *faults.UnknownFaultError
	require.ErrorAs(t, err, &ue)
	_, spec, err := r.Get("av-latency")
	require.NoError(t, err)
	require.Equal(t, "av-latency", spec.Name)
}
