package deploy_test

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The values the tests stamp into the binary they build.
const (
	stampVersion = "v0.0.0-deploytest"
	stampCommit  = "0123456789abcdef0123456789abcdef01234567"
)

var (
	buildOnce sync.Once
	builtPath string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// repoRoot is the repository this package sits in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// binary builds warden once with scripts/build.sh, stamped with the test's
// version and commit, and returns its path.
func binary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "warden-deploy-"); buildErr != nil {
			return
		}
		builtPath = filepath.Join(buildDir, "warden")
		cmd := exec.Command("bash", filepath.Join(root, "scripts", "build.sh"), "-o", builtPath)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "WARDEN_VERSION="+stampVersion, "WARDEN_COMMIT="+stampCommit)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = errors.New("scripts/build.sh: " + err.Error() + "\n" + string(out))
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtPath
}

// TestVersionIsStamped: what scripts/build.sh stamps is what `warden
// version` prints, with the Go version the binary was built with.
func TestVersionIsStamped(t *testing.T) {
	out, err := exec.Command(binary(t), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("warden version: %v\n%s", err, out)
	}
	got := string(out)
	for _, want := range []string{
		"warden " + stampVersion + "\n",
		"commit " + stampCommit + "\n",
		"go " + strings.TrimPrefix(runtime.Version(), "go") + "\n",
		"go-sdk v",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warden version printed:\n%s\nwant a line with %q", got, want)
		}
	}
}

// TestBinaryIsStatic: the release binary runs on a host (or in an image)
// with no libc at all, and carries neither a symbol table, debug
// information nor the path it was built in.
func TestBinaryIsStatic(t *testing.T) {
	bin := binary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("imported libraries %v (%v); want none", libs, err)
	}
	if _, err := f.Symbols(); !errors.Is(err, elf.ErrNoSymbols) {
		t.Errorf("the binary has a symbol table (err %v): -s was not applied", err)
	}
	if s := f.Section(".debug_info"); s != nil {
		t.Error("the binary has DWARF (.debug_info): -w was not applied")
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if root := repoRoot(t); bytes.Contains(data, []byte(root+"/")) {
		t.Errorf("the binary holds its build path %s: -trimpath was not applied", root)
	}
}
