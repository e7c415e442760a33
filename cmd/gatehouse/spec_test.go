package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// run executes the gatehouse command tree in-process, as main would, and
// returns stdout, stderr and the exit status main would use.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err := root.Execute()
	code := 0
	var ec exitCode
	switch {
	case errors.As(err, &ec):
		code = int(ec)
	case err != nil:
		errOut.WriteString(err.Error())
		code = 1
	}
	return out.String(), errOut.String(), code
}

func TestSpecValidateExamples(t *testing.T) {
	out, errOut, code := run(t, "spec", "validate", "../../deploy/examples/")
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	for _, want := range []string{"ok petstore", "ok status-page"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
}

func TestSpecValidateInvalidFixtures(t *testing.T) {
	files, _ := filepath.Glob("../../spec/testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want, line := header(t, file)
			_, errOut, code := run(t, "spec", "validate", file)
			if code != 1 {
				t.Fatalf("exit %d, want 1", code)
			}
			if w := file + ":" + line + ": " + want; !strings.Contains(errOut, w) {
				t.Fatalf("stderr lacks %q:\n%s", w, errOut)
			}
		})
	}
}

func header(t *testing.T, file string) (want, line string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			want = v
		}
		if v, ok := strings.CutPrefix(sc.Text(), "# line: "); ok {
			line = v
		}
	}
	return want, line
}

func TestEnvTwin(t *testing.T) {
	newCmd := func(got *string, n *int) *cobra.Command {
		c := &cobra.Command{Use: "widget", RunE: func(*cobra.Command, []string) error { return nil }}
		c.Flags().StringVar(got, "grpc-addr", "127.0.0.1:1", "")
		c.Flags().IntVar(n, "workers", 1, "")
		root := &cobra.Command{Use: "gatehouse"}
		root.AddCommand(c)
		bindEnv(c, "GATEHOUSE")
		return root
	}
	var addr string
	var n int
	t.Setenv("GATEHOUSE_WIDGET_GRPC_ADDR", "127.0.0.1:9")
	t.Setenv("GATEHOUSE_WIDGET_WORKERS", "4")
	root := newCmd(&addr, &n)
	root.SetArgs([]string{"widget"})
	if err := root.Execute(); err != nil || addr != "127.0.0.1:9" || n != 4 {
		t.Fatalf("env twin not applied: addr=%q n=%d err=%v", addr, n, err)
	}
	root = newCmd(&addr, &n)
	root.SetArgs([]string{"widget", "--grpc-addr", "127.0.0.1:7"})
	if err := root.Execute(); err != nil || addr != "127.0.0.1:7" {
		t.Fatalf("flag should win over env: addr=%q err=%v", addr, err)
	}
	t.Setenv("GATEHOUSE_WIDGET_WORKERS", "many")
	root = newCmd(&addr, &n)
	root.SetArgs([]string{"widget"})
	root.SilenceErrors, root.SilenceUsage = true, true
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), "GATEHOUSE_WIDGET_WORKERS") {
		t.Fatalf("bad env value: err=%v, want it to name the variable", err)
	}
}
