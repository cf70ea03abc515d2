package akserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentkey-go/agentkey"
)

// errorBody is the body of every error answer.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message,omitempty"`
}

// inputError is a request the server refuses because of its input: a bad
// field, query parameter or path value. Its message names what is wrong.
type inputError struct{ msg string }

func (e *inputError) Error() string { return e.msg }

// invalid returns an inputError with a formatted message.
func invalid(format string, args ...any) error {
	return &inputError{msg: fmt.Sprintf(format, args...)}
}

// api says which API an error is answered for: the two differ only in what
// a fault is called.
type api int

const (
	adminAPI api = iota
	decisionAPI
)

// errorStatus is the one table from errors to answers. The message of a
// client's error is shown to the client; that of a fault is only logged.
func errorStatus(err error, which api) (status int, code, message string) {
	var (
		input    *inputError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, "request_too_large",
			fmt.Sprintf("the body must be at most %d bytes", tooLarge.Limit)
	case errors.As(err, &input):
		return http.StatusBadRequest, "invalid_request", input.msg
	case errors.Is(err, agentkey.ErrInvalidArgument),
		errors.Is(err, agentkey.ErrDuration),
		errors.Is(err, agentkey.ErrPeriod),
		errors.Is(err, agentkey.ErrAmountSyntax),
		errors.Is(err, agentkey.ErrAmountNegative),
		errors.Is(err, agentkey.ErrAmountOverflow),
		errors.Is(err, agentkey.ErrAmountTooExact):
		return http.StatusBadRequest, "invalid_request", clientMessage(err)
	case errors.Is(err, agentkey.ErrNotFound):
		return http.StatusNotFound, "not_found", clientMessage(err)
	case errors.Is(err, agentkey.ErrConflict):
		return http.StatusConflict, "conflict", clientMessage(err)
	case errors.Is(err, agentkey.ErrHoldClosed):
		return http.StatusConflict, "hold_closed", clientMessage(err)
	case errors.Is(err, agentkey.ErrIdempotencyKeyReused):
		return http.StatusConflict, "idempotency_key_reused", clientMessage(err)
	case errors.Is(err, agentkey.ErrCycle):
		return http.StatusConflict, "tree_cycle", clientMessage(err)
	case errors.Is(err, agentkey.ErrTooDeep):
		return http.StatusConflict, "tree_too_deep", clientMessage(err)
	case errors.Is(err, agentkey.ErrOverLimit):
		return http.StatusConflict, "over_limit", clientMessage(err)
	case errors.Is(err, agentkey.ErrCreditTooLarge):
		return http.StatusConflict, "credit_too_large", clientMessage(err)
	}
	if which == decisionAPI {
		return http.StatusInternalServerError, "auth_unavailable", ""
	}
	return http.StatusInternalServerError, "internal_error", ""
}

// clientMessage is the message of a client's error without the sentinel's
// own words, which the error code already says.
func clientMessage(err error) string {
	msg := err.Error()
	for _, s := range []error{agentkey.ErrInvalidArgument} {
		msg = strings.Replace(msg, s.Error()+": ", "", 1)
	}
	return msg
}

// writeError answers err by the table, logging faults with their detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error, which api) {
	status, code, msg := errorStatus(err, which)
	if status >= http.StatusInternalServerError {
		s.log.ErrorContext(r.Context(), "request failed", logRoute, r.Pattern, logErr, err)
	}
	writeJSON(w, status, errorBody{Error: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode decodes the request's JSON body into v. It refuses unknown fields
// and trailing data; an empty body decodes as an empty object, so that the
// fields' own checks name what is missing. The body is already bounded by
// the server's MaxBodyBytes.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == io.EOF {
		return nil
	}
	if err == nil {
		if _, err = dec.Token(); err == io.EOF {
			return nil
		}
		if err == nil {
			return invalid("unexpected data after the JSON object")
		}
	}

	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return err
	}
	return &inputError{msg: describeJSONError(err)}
}

// noBody refuses a request body on a route that takes none: only an empty
// body, whitespace or an empty object {} pass, so that a client that meant to
// send something learns it was not understood before anything is done.
func noBody(r *http.Request) error {
	raw, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return err
	case err != nil:
		return invalid("read the body: %v", err)
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var fields map[string]json.RawMessage
	if raw[0] != '{' || json.Unmarshal(raw, &fields) != nil {
		return invalid("this route takes no body: send none, or {}")
	}
	for name := range fields {
		return invalid("unknown field %q: this route takes no body", truncate(name, 40))
	}
	return nil
}

// describeJSONError turns an error from decoding a request's JSON body into
// a message that names the offending field when it can.
func describeJSONError(err error) string {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %s", syntax.Offset,
			strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return fmt.Sprintf("the body must be a JSON object, got %s", typeErr.Value)
		}
		return fmt.Sprintf("%s: want a %s, got %s", typeErr.Field,
			jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends too early"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

// jsonKind names a Go kind as the JSON value that decodes into it.
func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "string"
	case "slice", "array":
		return "list"
	case "map", "struct", "ptr":
		return "object"
	case "bool":
		return "boolean"
	}
	return "number"
}

// budgetInput is a budget as a request body gives it.
type budgetInput struct {
	// Limit is a decimal amount such as "50" or "0.25". Required.
	Limit string `json:"limit"`
	// Period is none, day, week or month. Defaults to none.
	Period string `json:"period"`
	// Anchor, an RFC 3339 time, fixes the day a monthly budget resets.
	Anchor string `json:"anchor"`
}

// spec parses a budget; field names it in messages, such as "budgets[0]".
func (b budgetInput) spec(field string) (agentkey.BudgetSpec, error) {
	var spec agentkey.BudgetSpec
	if b.Limit == "" {
		return spec, invalid("%s.limit is required", field)
	}
	limit, err := parseAmount(field+".limit", b.Limit, false)
	if err != nil {
		return spec, err
	}
	period, err := agentkey.ParsePeriod(b.Period)
	if err != nil {
		return spec, invalid("%s.period: %v", field, err)
	}
	anchor, err := parseTime(field+".anchor", b.Anchor)
	if err != nil {
		return spec, err
	}
	return agentkey.BudgetSpec{Limit: limit, Period: period, Anchor: anchor}, nil
}

// specs parses the budgets of a request.
func specs(in []budgetInput) ([]agentkey.BudgetSpec, error) {
	out := make([]agentkey.BudgetSpec, 0, len(in))
	seen := map[agentkey.Period]bool{}
	for i, b := range in {
		spec, err := b.spec(fmt.Sprintf("budgets[%d]", i))
		if err != nil {
			return nil, err
		}
		if seen[spec.Period] {
			return nil, invalid("budgets[%d].period: two budgets with period %s", i, spec.Period)
		}
		seen[spec.Period] = true
		out = append(out, spec)
	}
	return out, nil
}

// parseAmount parses a decimal amount; signed allows a leading minus.
func parseAmount(field, s string, signed bool) (agentkey.Money, error) {
	parse := agentkey.ParseMoney
	if signed {
		parse = agentkey.ParseSignedMoney
	}
	m, err := parse(s)
	if err != nil {
		return 0, invalid("%s: %v", field, err)
	}
	return m, nil
}

// parseTime parses an optional RFC 3339 time.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, invalid("%s %q: want an RFC 3339 time such as 2030-01-02T15:04:05Z",
			field, truncate(s, 40))
	}
	return t, nil
}

// parseDuration parses an optional duration with ParseDuration.
func parseDuration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, invalid("%s: %v", field, err)
	}
	return d, nil
}

// ParseDuration parses a duration as the admin and decision APIs and the
// agentkey command take them: in agentkey.ParseDuration's units ("30m",
// "7d", "1mo") or in Go's ("90s", "1h30m"). It refuses zero and negative
// durations with an error wrapping agentkey.ErrDuration.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := agentkey.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w %q: want a positive number and a unit (s, m, h, d, w or mo), "+
			"such as 90s, 30m or 7d", agentkey.ErrDuration, truncate(s, 40))
	}
	return d, nil
}

// checkQuery refuses a query parameter that is not one of allowed, or that
// is given twice, naming it: a misspelt filter would otherwise be ignored,
// and the request would select everything.
func checkQuery(r *http.Request, allowed []string) error {
	if r.URL.RawQuery == "" {
		return nil
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return invalid("malformed query: %s", truncate(err.Error(), 100))
	}
	for _, name := range slices.Sorted(maps.Keys(q)) {
		switch {
		case !slices.Contains(allowed, name) && len(allowed) == 0:
			return invalid("unknown query parameter %q: this route takes none", truncate(name, 40))
		case !slices.Contains(allowed, name):
			return invalid("unknown query parameter %q: want %s", truncate(name, 40),
				strings.Join(allowed, ", "))
		case len(q[name]) > 1:
			return invalid("query parameter %q is given %d times: give it once", name,
				len(q[name]))
		}
	}
	return nil
}

// queryIDs checks the ids that the named query parameters give, when given.
func queryIDs(q url.Values, names ...string) error {
	for _, name := range names {
		if v := q.Get(name); v != "" {
			if err := checkID(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// queryLimit reads the limit query parameter: def when absent, at most most.
func queryLimit(r *http.Request, def, most int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, invalid("limit %q: want a whole number from 1 to %d", truncate(s, 20), most)
	}
	return n, nil
}

// checkID refuses an id that is empty, long or has characters that would be
// trouble in a path or a log line.
func checkID(field, id string) error {
	if id == "" || len(id) > 255 || strings.ContainsFunc(id, func(r rune) bool {
		return r <= ' ' || r == '/' || r == '?' || r == '#' || r > '~'
	}) {
		return invalid("%s %q must be 1 to 255 printable characters without spaces or /?#",
			field, truncate(id, 40))
	}
	return nil
}

// checkLabel refuses a name or note that is long or has control characters.
func checkLabel(field, s string) error {
	if len(s) > 500 || strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return invalid("%s must be at most 500 characters without control characters", field)
	}
	return nil
}

// checkMetadata bounds the metadata a request attaches to ledger entries.
func checkMetadata(md map[string]string) error {
	if len(md) > 32 {
		return invalid("metadata: at most 32 entries")
	}
	for k, v := range md {
		if k == "" || len(k) > 64 || len(v) > 1024 {
			return invalid("metadata: keys must be 1 to 64 bytes and values at most 1024 bytes")
		}
	}
	return nil
}

// truncate shortens s for a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
