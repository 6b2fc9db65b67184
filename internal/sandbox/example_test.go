package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/wardenmcp/warden/internal/sandbox"
)

// Run a program with every layer this host supports. The process calling
// Command must call sandbox.Main first thing (here, TestMain does).
func ExampleCommand() {
	scratch, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(scratch)
	layers, _, err := sandbox.Check().Resolve(nil, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	cmd, err := sandbox.Command(&sandbox.Config{
		Path:   "/bin/sh",
		Args:   []string{"sh", "-c", "echo hello from pid $$"},
		Env:    []string{"PATH=/usr/bin:/bin"},
		Dir:    scratch,
		Limits: sandbox.DefaultLimits,
		Layers: layers,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Run(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(out.String())
	// Output: hello from pid 1
}
