package main

import (
	"testing"

	"github.com/wardenmcp/warden/bench/internal/anchor/anchortest"
)

func TestEcho(t *testing.T) {
	t.Run("stateless", func(t *testing.T) { anchortest.Stateless(t, newHandler(false)) })
	t.Run("session", func(t *testing.T) { anchortest.Session(t, newHandler(true)) })
}
