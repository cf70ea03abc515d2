package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// maxWork bounds the simulated duration of a model call.
const maxWork = time.Minute

// defaults is the row each customer gets the first time its key is seen:
// $50 a month for proxy.chat, as in the reference's quick start.
var defaults = agentkey.SubjectParams{
	Scopes:  []string{"proxy.chat"},
	Budgets: []agentkey.BudgetSpec{{Limit: 50 * agentkey.Dollar, Period: agentkey.PeriodMonth}},
}

// newHandler returns the API: POST /api/chat behind the Clerk API-key
// middleware. By default the middleware holds each call's estimate
// (max_cost) before the work and the handler settles the real cost; with
// chargeAfter, it only checks that the customer has budget left and the
// handler charges after the work with TrackByAPIKey, as the reference's quick
// start does.
func newHandler(svc *agentkey.Service, verifier *akclerk.Verifier, logger *slog.Logger,
	chargeAfter bool,
) http.Handler {
	opts := akclerk.APIKeyOptions{
		Service:  svc,
		Verifier: verifier,
		Scope:    "proxy.chat",
		Defaults: defaults,
		Logger:   logger,
	}
	if !chargeAfter {
		opts.Estimate = estimate
	}
	mux := http.NewServeMux()
	mux.Handle("POST /api/chat", akclerk.APIKeyMiddleware(opts)(chat(svc, chargeAfter)))
	return mux
}

// estimate is the most a call may cost: its max_cost parameter, in cents,
// or its cost when max_cost is absent.
func estimate(r *http.Request) (agentkey.Money, error) {
	if s := r.URL.Query().Get("max_cost"); s != "" {
		return parseCents(s)
	}
	cost, _, err := parseCall(r)
	return cost, err
}

// chat stands in for a model call whose cost comes from the request, and
// bills it to the customer after the work.
func chat(svc *agentkey.Service, chargeAfter bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cost, work, err := parseCall(r)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}

		select {
		case <-time.After(work):
		case <-r.Context().Done():
			// The client left before the work was done: nothing to bill. Give the
			// hold back, if the middleware made one, at once (the middleware would
			// release it too, seeing no answer to a client that has gone).
			_, _ = agentkey.Release(r.Context())
			return
		}

		var res agentkey.ChargeResult
		if chargeAfter {
			// The reference's trackByApiKey: charge the key's customer.
			key, _ := akclerk.APIKeyFromContext(r.Context())
			res, err = akclerk.TrackByAPIKey(r.Context(), svc, key.Subject, cost)
		} else {
			// Settle the hold the middleware made at the real cost.
			res, err = agentkey.Charge(r.Context(), cost)
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError,
				map[string]string{"error": "charge_failed"})
			return
		}
		if !res.OK() {
			// The customer had budget left when the request came in, but not
			// enough for this call: the work is done and cannot be billed.
			writeJSON(w, http.StatusTooManyRequests,
				map[string]any{"error": res.Reason, "budget": res.RefusedBy})
			return
		}

		remaining, limited := res.Key.Remaining()
		body := map[string]any{"reply": "Hello from the model.", "charged": res.Charged}
		if limited {
			body["remaining"] = remaining
		}
		if res.Overrun > 0 {
			body["overrun"] = res.Overrun // cost above max_cost that did not fit the budget
		}
		writeJSON(w, http.StatusOK, body)
	})
}

// parseCall reads the call's cost in cents (default 1) and its duration.
func parseCall(r *http.Request) (agentkey.Money, time.Duration, error) {
	q := r.URL.Query()
	cost := agentkey.Cent
	if s := q.Get("cost"); s != "" {
		c, err := parseCents(s)
		if err != nil {
			return 0, 0, err
		}
		cost = c
	}

	var work time.Duration
	if s := q.Get("work_ms"); s != "" {
		ms, err := strconv.Atoi(s)
		if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > maxWork {
			return 0, 0, fmt.Errorf("work_ms must be a whole number from 0 to %d",
				maxWork.Milliseconds())
		}
		work = time.Duration(ms) * time.Millisecond
	}
	return cost, work, nil
}

// parseCents parses a non-negative decimal number of cents, such as "2.5".
// A cent has 10,000 micro-units, so four decimals are exact.
func parseCents(s string) (agentkey.Money, error) {
	asDollars, err := agentkey.ParseMoney(s) // the same digits, read as dollars
	if err != nil {
		return 0, fmt.Errorf("cost: %w", err)
	}
	if asDollars%100 != 0 {
		return 0, errors.New("cost: at most 4 decimals of a cent")
	}
	return asDollars / 100, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
