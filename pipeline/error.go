package pipeline

import (
	"errors"
	"fmt"
	"time"
)

// Code classifies a refusal or failure. Codes are part of Warden's public
// contract: clients and audit queries match on them.
type Code string

const (
	InvalidArgument  Code = "INVALID_ARGUMENT"
	PermissionDenied Code = "PERMISSION_DENIED"
	NotFound         Code = "NOT_FOUND"
	RateLimited      Code = "RATE_LIMITED"
	ApprovalRequired Code = "APPROVAL_REQUIRED"
	ApprovalDenied   Code = "APPROVAL_DENIED"
	// ConfirmationRequired: the call needs the user's own confirmation and
	// the client cannot ask for it (it does not support elicitation).
	ConfirmationRequired Code = "CONFIRMATION_REQUIRED"
	Timeout              Code = "TIMEOUT"
	Unavailable          Code = "UNAVAILABLE"
	AuditUnavailable     Code = "AUDIT_UNAVAILABLE"
	// ToolChanged: an upstream server's definition of the target changed
	// (or looks poisoned) and is quarantined until an operator approves it.
	ToolChanged Code = "TOOL_CHANGED"
	Internal    Code = "INTERNAL"
)

// Error is the one shape of every refusal, both on the wire (as a tool
// error's structured content) and in the audit log.
type Error struct {
	Code       Code   `json:"error_code"`
	Message    string `json:"message"`
	Suggestion string `json:"suggestion,omitempty"`
	// RetryAfter is in whole seconds; zero means retrying will not help
	// without a change.
	RetryAfter int `json:"retry_after,omitempty"`
	// ApprovalID names the approval request an APPROVAL_REQUIRED refusal
	// opened or is waiting on: repeat the call with it once approved.
	ApprovalID string `json:"approval_id,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, suggestion, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Suggestion: suggestion}
}

// WithRetryAfter sets RetryAfter, rounding up to whole seconds.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	e.RetryAfter = int((d + time.Second - 1) / time.Second)
	return e
}

// AsError returns err as an *Error. Errors that are not already an *Error
// become a generic INTERNAL error whose message reveals nothing about the
// cause; the caller is responsible for logging the original.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{
		Code:       Internal,
		Message:    "the call failed inside the server",
		Suggestion: "retry later; if it persists, give the operator the trace id",
	}
}
