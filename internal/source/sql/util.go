package sql

import (
	"bytes"
	"io"
	"strings"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func trimJSONPrefix(s string) string {
	s = strings.TrimPrefix(s, "json: ")
	return strings.Replace(s, "unknown field", "unknown setting", 1)
}
