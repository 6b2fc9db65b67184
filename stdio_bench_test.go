package warden_test

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkStdioCall measures one tools/call of a stdio session, client
// included (in-memory pipes standing in for standard input and output),
// one at a time as a stdio client makes them, on the lean path
// (ServeStdio) and through the SDK's stdio session (Server.Run), with the
// policy stages of a server without stores: what the protocol path over
// stdio costs.
func BenchmarkStdioCall(b *testing.B) {
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"create_order","arguments":{"sku":"SKU-123","quantity":1}}}` + "\n"
	for _, sdk := range []bool{false, true} {
		name := "lean"
		if sdk {
			name = "sdk"
		}
		b.Run(name, func(b *testing.B) {
			srv := newServer(b)
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				if sdk {
					srv.MCP().Run(ctx, &mcp.IOTransport{Reader: inR, Writer: outW})
				} else {
					srv.ServeStdio(ctx, inR, outW)
				}
				outW.Close()
			}()
			b.Cleanup(func() { cancel(); inW.Close(); <-done })
			out := bufio.NewReaderSize(outR, 64<<10)
			roundTrip := func(line string) string {
				if _, err := io.WriteString(inW, line); err != nil {
					b.Fatal(err)
				}
				resp, err := out.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				return resp
			}
			roundTrip(initialize + "\n")
			io.WriteString(inW, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n")
			if resp := roundTrip(call); !strings.Contains(resp, `"ordered"`) {
				b.Fatalf("the call failed: %s", resp)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				roundTrip(call)
			}
		})
	}
}
