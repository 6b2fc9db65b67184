package main

import (
	"testing"

	"github.com/wardenmcp/warden/bench/internal/anchor/anchortest"
)

func TestEcho(t *testing.T) {
	for _, sse := range []bool{false, true} {
		t.Run("stateless", func(t *testing.T) { anchortest.Stateless(t, newHandler(false, sse)) })
		t.Run("session", func(t *testing.T) { anchortest.Session(t, newHandler(true, sse)) })
	}
}
