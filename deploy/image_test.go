package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// imageUID is the user the image runs as (deploy/rootfs/etc/passwd).
const imageUID = 65532

// podman runs podman as the README says it works on hosts without a
// daemon, overlay or cgroup delegation.
func podman(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "podman", append([]string{"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--runtime", "runc"}, args...)...)
}

var runFlags = []string{"--network", "host", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"}

// TestImageRunsTheDemo builds the image with scripts/build.sh (buildah, no
// daemon), runs the demo in it with podman and calls a tool over HTTP as a
// client would; the image runs as a non-root user without capabilities and
// has no shell.
func TestImageRunsTheDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("building and running the image needs root (buildah and podman with the vfs driver); scripts/test.sh runs as root in CI")
	}
	for _, tool := range []string{"buildah", "podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed: scripts/test.sh installs buildah, podman and runc with apt-get", tool)
		}
	}
	bin := binary(t)
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	image := fmt.Sprintf("localhost/warden-deploytest:%d", os.Getpid())
	build := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "build.sh"), "image", "-b", bin, "-t", image)
	build.Dir = root
	build.Env = append(os.Environ(), "WARDEN_VERSION="+stampVersion, "WARDEN_COMMIT="+stampCommit)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/build.sh image: %v\n%s", err, out)
	}
	t.Cleanup(func() { podman(context.Background(), "rmi", "-f", image).Run() })

	inspect, err := podman(ctx, "image", "inspect", "--format", "{{.Config.User}}|{{index .Config.Labels \"org.opencontainers.image.version\"}}", image).CombinedOutput()
	if err != nil {
		t.Fatalf("podman image inspect: %v\n%s", err, inspect)
	}
	if got, want := strings.TrimSpace(string(inspect)), fmt.Sprintf("%d:%d|%s", imageUID, imageUID, stampVersion); got != want {
		t.Errorf("image user|version label = %q, want %q", got, want)
	}

	// No shell to run: an attacker with code execution in Warden finds no
	// /bin/sh to continue with.
	sh, err := podman(ctx, append(append([]string{"run", "--rm"}, runFlags...), "--entrypoint", "/bin/sh", image, "-c", "id")...).CombinedOutput()
	if err == nil || !strings.Contains(string(sh), "no such file") {
		t.Errorf("running /bin/sh in the image: err %v, output %s; want it not to exist", err, sh)
	}

	// The demo keeps its database, state and keys in /data, a volume the
	// image's user owns.
	data := t.TempDir()
	if err := os.Chown(data, imageUID, imageUID); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	name := fmt.Sprintf("warden-deploytest-%d", os.Getpid())
	args := append(append([]string{"run", "-d", "--name", name}, runFlags...),
		"-v", data+":/data", image, "demo", "--dir", "/data", "--quiet-keys", "--http", fmt.Sprintf("127.0.0.1:%d", port))
	if out, err := podman(ctx, args...).CombinedOutput(); err != nil {
		t.Fatalf("podman run: %v\n%s", err, out)
	}
	t.Cleanup(func() { podman(context.Background(), "rm", "-f", "-t", "2", name).Run() })
	logs := func() string {
		out, _ := podman(context.Background(), "logs", name).CombinedOutput()
		return string(out)
	}

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitHealthy(ctx, base+"/healthz"); err != nil {
		t.Fatalf("the demo in the image did not come up: %v\nlogs:\n%s", err, logs())
	}

	// The process runs as the image's user with no capability.
	pid, err := podman(ctx, "inspect", "--format", "{{.State.Pid}}", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%[1]d\t%[1]d\t%[1]d", imageUID), "CapEff:\t0000000000000000"} {
		if !strings.Contains(string(status), want+"\n") {
			t.Errorf("the process in the container: want %q in its status:\n%s", want, status)
		}
	}

	// An operator's command in the running container (kubectl exec, podman
	// exec) finds warden on the PATH.
	if out, err := podman(ctx, "exec", name, "warden", "version").CombinedOutput(); err != nil || !strings.Contains(string(out), "warden "+stampVersion+"\n") {
		t.Errorf("podman exec %s warden version: %v\n%s", name, err, out)
	}

	keys := demoKeys(t, filepath.Join(data, "demo-keys.json"))
	// acme's support key reads acme's customer; globex's key, bound to
	// another tenant, gets nothing for the same id; no key, no call.
	rows := callGetCustomer(t, base, keys["acme-support"], http.StatusOK)
	if len(rows) != 1 || rows[0]["name"] != "Ada Lovelace" || rows[0]["tenant_id"] != "acme" {
		t.Errorf("get_customer C-1001 as acme-support: rows %v, want Ada Lovelace of acme", rows)
	}
	if rows := callGetCustomer(t, base, keys["globex-analyst"], http.StatusOK); len(rows) != 0 {
		t.Errorf("get_customer C-1001 as globex-analyst: rows %v, want none (another tenant's customer)", rows)
	}
	callGetCustomer(t, base, "", http.StatusUnauthorized)

	// What the demo wrote in the volume belongs to the image's user.
	for _, f := range []string{"crm.db", "state.db", "warden-audit.key"} {
		fi, err := os.Stat(filepath.Join(data, f))
		if err != nil {
			t.Errorf("%s in the volume: %v\nlogs:\n%s", f, err, logs())
			continue
		}
		if uid := fileUID(fi); uid != imageUID {
			t.Errorf("%s in the volume belongs to uid %d, want %d", f, uid, imageUID)
		}
	}
}

// waitHealthy polls url until it answers 200 or ctx ends.
func waitHealthy(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// demoKeys reads the API keys the demo wrote, by name.
func demoKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list []struct{ Name, Key string }
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	keys := map[string]string{}
	for _, k := range list {
		keys[k.Name] = k.Key
	}
	return keys
}

// callGetCustomer calls the demo's get_customer for C-1001 as a stateless
// 2026-07-28 client with key (none if empty), wants the HTTP status, and
// returns the rows of a successful call.
func callGetCustomer(t *testing.T, base, key string, wantStatus int) []map[string]any {
	t.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_customer","arguments":{"customer_id":"C-1001"},` +
		`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	req, err := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "get_customer")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("tools/call: status %d, want %d: %s", resp.StatusCode, wantStatus, buf.String())
	}
	if wantStatus != http.StatusOK {
		return nil
	}
	var msg struct {
		Result struct {
			IsError           bool `json:"isError"`
			StructuredContent struct {
				Rows []map[string]any `json:"rows"`
			} `json:"structuredContent"`
		} `json:"result"`
		Error any `json:"error"`
	}
	if err := json.Unmarshal(buf.Bytes(), &msg); err != nil {
		t.Fatalf("tools/call answer %s: %v", buf.String(), err)
	}
	if msg.Error != nil || msg.Result.IsError {
		t.Fatalf("tools/call failed: %s", buf.String())
	}
	return msg.Result.StructuredContent.Rows
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// fileUID is the owner of a file.
func fileUID(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
