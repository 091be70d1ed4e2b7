package cli_test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mailchaos/mailchaos/cli"
)

func TestServeGuardRefusesRemoteListens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(open, []byte("s3cret\n"), 0o644))
	require.NoError(t, os.Chmod(open, 0o644))
	remoteCfg := filepath.Join(dir, "stack.yaml")
	require.NoError(t, os.WriteFile(remoteCfg, []byte("access:\n  sites:\n    - name: site-a\n      listen: 0.0.0.0:0\n"), 0o600))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"clamd on every interface", []string{"target", "serve", "clamd", "--listen", "0.0.0.0:0"},
			"flag --listen: 0.0.0.0:0 is not a loopback address; add --allow-remote"},
		{"clamd without host", []string{"target", "serve", "clamd", "--listen", ":0"}, "add --allow-remote"},
		{"mailstack metrics", []string{"target", "serve", "mailstack", "--smtp", "127.0.0.1:0", "--imap", "127.0.0.1:0", "--metrics", "0.0.0.0:0"},
			"--metrics: 0.0.0.0:0 is not a loopback address"},
		{"mailstack smtp", []string{"target", "serve", "mailstack", "--smtp", "[::]:0"}, "--smtp: [::]:0 is not a loopback address"},
		{"mailstack site in the file", []string{"target", "serve", "mailstack", "--config", remoteCfg},
			"access site site-a listen: 0.0.0.0:0 is not a loopback address"},
		{"token file readable by others", []string{"target", "serve", "mailstack", "--token-file", open}, "flag --token-file"},
		{"proxy token file readable by others", []string{"proxy", "serve", "--listen", "127.0.0.1:0", "--token-file", open}, "lets others read"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, tt.args...)
			require.Equal(t, cli.ExitInvalid, code, stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

// post sends a JSON-less or JSON POST to url with headers (pairs).
func post(t *testing.T, url, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestServeGuardProxyServe(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))

	var cout, cerr syncBuffer
	csigs := make(chan os.Signal, 1)
	cdone := goCLI(t, cli.Env{Stdout: &cout, Stderr: &cerr, Signals: csigs}, "target", "serve", "clamd", "--listen", "127.0.0.1:0")
	upstream := endpoints(t, &cout, "clamd")["clamd"]

	var out, errb syncBuffer
	sigs := make(chan os.Signal, 1)
	done := goCLI(t, cli.Env{Stdout: &out, Stderr: &errb, Signals: sigs}, "proxy", "serve", "--listen", "127.0.0.1:0", "--token-file", tokenFile)
	api := endpoints(t, &out, "toxiproxy")["toxiproxy"]
	const auth, js = "Bearer s3cret", "application/json"

	remote := `{"name":"clamd","listen":"0.0.0.0:0","upstream":"` + upstream + `"}`
	local := `{"name":"clamd","listen":"127.0.0.1:0","upstream":"` + upstream + `"}`
	code, body := post(t, api+"/proxies", local, "Content-Type", js)
	require.Equal(t, http.StatusUnauthorized, code, body)
	code, body = post(t, api+"/proxies", local, "Content-Type", "text/plain", "Authorization", auth)
	require.Equal(t, http.StatusUnsupportedMediaType, code, body)
	code, body = post(t, api+"/proxies", local, "Content-Type", js, "Authorization", auth, "Origin", "http://evil.example")
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = post(t, api+"/proxies", remote, "Content-Type", js, "Authorization", auth)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "--allow-remote")
	code, body = post(t, api+"/proxies", local, "Content-Type", js, "Authorization", auth)
	require.Equal(t, http.StatusCreated, code, body)

	// mailchaos' own inject works through the guarded API with the token
	// in its environment.
	target := filepath.Join(dir, "target.yaml")
	require.NoError(t, os.WriteFile(target, []byte("name: guarded\ntoxiproxy: "+api+"\nlinks:\n  - name: clamd\n    upstream: "+upstream+"\n"), 0o600))
	var iout, ierr syncBuffer
	getenv := func(k string) string {
		if k == "MAILCHAOS_TOKEN" {
			return "s3cret"
		}
		return os.Getenv(k)
	}
	t.Setenv("MAILCHAOS_TOKEN", "s3cret") // the built-in faults' client reads the process environment
	icode := runCLI(t, cli.Env{Stdout: &iout, Stderr: &ierr, Getenv: getenv}, "inject", "av-latency", "--target", target, "--link", "clamd",
		"--param", "latency=10ms", "--for", "300ms")
	require.Equal(t, cli.ExitOK, icode, "%s\n%s", iout.String(), ierr.String())
	require.Contains(t, iout.String(), "removed av-latency")

	sigs <- os.Interrupt
	csigs <- os.Interrupt
	for _, d := range []<-chan int{done, cdone} {
		select {
		case code := <-d:
			require.Equal(t, cli.ExitOK, code, errb.String())
		case <-time.After(waitFor):
			t.Fatal("a server did not stop on SIGINT")
		}
	}
}
