package yamlfile_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/mailchaos/mailchaos/internal/yamlfile"
)

// adversarial returns inputs of size bytes, most just within the limits,
// that are expensive to parse or decode: deep nesting, alias fan-out,
// long lines, many keys, many values.
func adversarial(size int) map[string]string {
	out := map[string]string{}
	pad := func(s string) string { return s + strings.Repeat("#", size-len(s)) }
	out["nested-flow"] = "extra: " + strings.Repeat("[", size-7)
	out["nested-flow-map"] = "extra: " + strings.Repeat("{a: ", (size-7)/4)
	var b strings.Builder
	b.WriteString("extra:\n")
	for i := 1; b.Len() < size; i++ {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	out["nested-block"] = b.String()[:size]
	out["nested-dash"] = "extra:\n" + strings.Repeat("- ", (size-7)/2)
	out["nested-just-within"] = pad("extra: " + strings.Repeat("[", yamlfile.MaxNesting-1) + strings.Repeat("]", yamlfile.MaxNesting-1) + "\n")

	// Ten anchors, each a list of ten aliases to the one before, and as
	// many aliases to the last as the value limit allows.
	b.Reset()
	b.WriteString("extra:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "  a%d: &a%d [%s*a%d]\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), i-1)
	}
	b.WriteString("  all: [")
	for i := 0; i < yamlfile.MaxValues-200; i++ {
		b.WriteString("*a9, ")
	}
	b.WriteString("*a9]\n")
	out["aliases"] = pad(b.String())

	out["long-line"] = "title: " + strings.Repeat("x", size-8) + "\n"

	b.Reset()
	b.WriteString("extra:\n")
	for m, n := 0, 1; n < yamlfile.MaxValues-2*yamlfile.MaxMappingKeys; m++ {
		fmt.Fprintf(&b, "  m%d:\n", m)
		for i := 1; i < yamlfile.MaxMappingKeys; i++ {
			fmt.Fprintf(&b, "    k%d: 1\n", i)
		}
		n += 2 * yamlfile.MaxMappingKeys
	}
	out["many-keys"] = pad(b.String())

	b.Reset()
	b.WriteString("extra: {")
	for i := 0; i < yamlfile.MaxValues/2-10; i++ {
		fmt.Fprintf(&b, "k%d: 1, ", i)
	}
	b.WriteString("z: 1}\n")
	out["many-flow-keys"] = pad(b.String())

	b.Reset()
	item := strings.Repeat("x", size/yamlfile.MaxValues-4)
	b.WriteString("tags:\n")
	for i := 0; i < yamlfile.MaxValues-10; i++ {
		fmt.Fprintf(&b, "- %s\n", item)
	}
	out["many-items"] = b.String()
	return out
}

// TestMemoryOfAdversarialInputs checks that parsing and decoding the
// worst inputs of the largest size allowed allocates less than 100 MB in
// all.
func TestMemoryOfAdversarialInputs(t *testing.T) {
	const limit = 100 << 20
	for name, src := range adversarial(yamlfile.DefaultMaxFileSize) {
		t.Run(name, func(t *testing.T) {
			data := []byte(src)
			if len(data) > yamlfile.DefaultMaxFileSize {
				t.Fatalf("input of %d bytes, more than the limit", len(data))
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			doc, err := yamlfile.Parse("f.yaml", data)
			if err == nil {
				var s sample
				err = doc.Decode(&s)
			}
			runtime.ReadMemStats(&after)
			got := after.TotalAlloc - before.TotalAlloc
			msg := fmt.Sprint(err)
			if len(msg) > 120 {
				msg = msg[:120] + "..."
			}
			t.Logf("%d bytes: %.1f MB allocated: %s", len(data), float64(got)/(1<<20), msg)
			if got > limit {
				t.Errorf("allocated %d MB, want less than %d MB", got>>20, limit>>20)
			}
		})
	}
}
