package pipeline

import (
	"net/http"
	"time"
)

// Authenticator establishes who makes an HTTP request. It returns the
// principal, or an *AuthError saying why not. It must not trust anything
// the client sends that it has not verified.
type Authenticator interface {
	Authenticate(r *http.Request) (*Principal, time.Time, error)
}

// AuthError is a refused authentication, answered with its HTTP status:
// 401 for a missing or invalid credential, 403 for a valid one that lacks
// what the request needs.
type AuthError struct {
	Status int
	// Code is the OAuth error code for WWW-Authenticate (invalid_token,
	// insufficient_scope), or "" for none.
	Code        string
	Description string
	// Scope names the scope needed, for insufficient_scope.
	Scope string
}

func (e *AuthError) Error() string { return e.Description }

// Unauthenticated returns a 401 AuthError.
func Unauthenticated(code, description string) *AuthError {
	return &AuthError{Status: http.StatusUnauthorized, Code: code, Description: description}
}
