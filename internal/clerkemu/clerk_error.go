package clerkemu

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	randv2 "math/rand/v2"
	"net/http"
	"strings"
)

// clerkError is one entry of the "errors" array of a Clerk error body.
//
// Only the status and the code are a contract the library may rely on; the
// messages imitate Clerk's wording without claiming to match it.
type clerkError struct {
	Message     string            `json:"message"`
	LongMessage string            `json:"long_message"`
	Code        string            `json:"code"`
	Meta        map[string]string `json:"meta,omitempty"`
}

// errorBody is the body Clerk's Backend API answers any failed request with.
// The SDK decodes it into clerk.APIErrorResponse.
type errorBody struct {
	Errors  []clerkError `json:"errors"`
	TraceID string       `json:"clerk_trace_id"`
}

var (
	errAuthenticationInvalid = clerkError{
		Message:     "Invalid authentication",
		LongMessage: "Unable to authenticate the request, you need to supply an active secret key",
		Code:        "authentication_invalid",
	}
	errResourceNotFound = clerkError{
		Message:     "not found",
		LongMessage: "Resource not found",
		Code:        "resource_not_found",
	}
	errMalformedBody = clerkError{
		Message:     "is invalid",
		LongMessage: "The request body is not a valid JSON object",
		Code:        "form_param_format_invalid",
	}
	errMethodNotAllowed = clerkError{
		Message:     "method not allowed",
		LongMessage: "The HTTP method is not allowed for this resource",
		Code:        "method_not_allowed",
	}
	errTooManyRequests = clerkError{
		Message:     "Too many requests",
		LongMessage: "Too many requests, please retry later",
		Code:        "too_many_requests",
	}
)

// paramMissing is Clerk's answer to a required body parameter that is absent
// or empty.
func paramMissing(name string) clerkError {
	return clerkError{
		Message:     "is missing",
		LongMessage: name + " is missing",
		Code:        "form_param_missing",
		Meta:        map[string]string{"param_name": name},
	}
}

// paramInvalid is Clerk's answer to a body parameter of the wrong JSON type.
func paramInvalid(name string) clerkError {
	return clerkError{
		Message:     "is invalid",
		LongMessage: name + " is invalid",
		Code:        "form_param_format_invalid",
		Meta:        map[string]string{"param_name": name},
	}
}

// serverError is the body of an injected failure with the given status.
func serverError(status int) clerkError {
	code := "internal_clerk_error"
	if status != http.StatusInternalServerError {
		code = strings.NewReplacer(" ", "_", "'", "").Replace(strings.ToLower(http.StatusText(status)))
		if code == "" {
			code = fmt.Sprintf("http_%d", status)
		}
	}

	return clerkError{
		Message:     "Oops, an unexpected error occurred",
		LongMessage: fmt.Sprintf("The emulated Clerk backend answered with status %d", status),
		Code:        code,
	}
}

// writeError answers with status and a Clerk error body holding e.
func writeError(w http.ResponseWriter, status int, e clerkError) {
	writeJSON(w, status, errorBody{Errors: []clerkError{e}, TraceID: w.Header().Get(traceHeader)})
}

// writeJSON answers with status and v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Every value written here is built by this package from valid parts.
		panic(fmt.Sprintf("clerkemu: encode response: %v", err))
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// traceHeader is the response header the SDK reads into
// clerk.APIResponse.TraceID.
const traceHeader = "Clerk-Trace-Id"

// newTraceID returns a random trace id shaped like Clerk's: 32 hex digits.
func newTraceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// base62 is the alphabet of the random part of Clerk resource ids.
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns an id shaped like Clerk's, such as
// "ak_2xhFjEI5X2qWRvtV13BzSj8H6Dk": a prefix, an underscore and 27
// base62 characters.
func newID(prefix string) string {
	var sb strings.Builder
	sb.WriteString(prefix)
	sb.WriteByte('_')
	for range 27 {
		sb.WriteByte(base62[randv2.IntN(len(base62))])
	}
	return sb.String()
}
