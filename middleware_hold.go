package agentkey

import (
	"context"
	"errors"
	"net/http"
	"sync"
)

// FixedEstimate returns an Estimate function that holds amount for every
// request.
func FixedEstimate(amount Money) func(*http.Request) (Money, error) {
	return func(*http.Request) (Money, error) { return amount, nil }
}

// Serve runs next for a request whose credential was validated as v: it
// checks the scope, holds the estimate when opts has one, and runs next with
// the key (and hold) in the request's context. A hold the handler neither
// settles (Charge) nor releases (Release) is released if the handler panics,
// answers with a status of 400 or more, or answers nothing to a client that
// has gone; it is settled at the estimate otherwise.
// The middlewares of this package and of akclerk call it.
func (s *Service) Serve(w http.ResponseWriter, r *http.Request, next http.Handler, v Validation,
	opts MiddlewareOptions,
) {
	ctx := r.Context()
	if reason := v.Check(opts.Scope); reason != "" {
		WriteDenial(w, Denial{Reason: reason, Key: &v.Key, Scope: opts.Scope, Now: s.now()})
		return
	}
	if opts.Estimate == nil {
		next.ServeHTTP(w, r.WithContext(ContextWithKey(ctx, s, v.Key)))
		return
	}

	estimate, err := opts.Estimate(r)
	if err != nil || estimate < 0 {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "invalid_estimate"})
		return
	}
	if estimate == 0 {
		// Nothing to hold: the request runs as without Estimate, and Charge
		// charges after the work.
		next.ServeHTTP(w, r.WithContext(ContextWithKey(ctx, s, v.Key)))
		return
	}
	res, err := s.Reserve(ctx, v.Key.ID, estimate, WithHoldTTL(opts.HoldTTL))
	if err != nil {
		s.log.ErrorContext(ctx, "reserve", logKeyID, v.Key.ID, logErr, err)
		WriteUnavailable(w)
		return
	}
	if !res.OK() {
		key := res.Key
		if key.ID == "" {
			key = v.Key
		}
		WriteDenial(w, Denial{Reason: res.Reason, Key: &key, Budget: res.RefusedBy, Now: s.now()})
		return
	}

	rh := &requestHold{svc: s, hold: res.Hold}
	c := &caller{svc: s, key: res.Key, hold: rh}
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		if p := recover(); p != nil {
			rh.finish(ctx, false)
			panic(p)
		}
		// A handler that answered nothing to a client that has gone gave up
		// on the work: there is nothing to bill.
		gaveUp := rec.status == 0 && ctx.Err() != nil
		rh.finish(ctx, rec.status < http.StatusBadRequest && !gaveUp)
	}()
	next.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, contextKey{}, c)))
}

// requestHold is the hold of one request, closed once by the handler or after it.
type requestHold struct {
	svc  *Service
	mu   sync.Mutex
	hold Hold
	done bool
}

// close settles or releases the hold unless it is closed already.
func (h *requestHold) close(ctx context.Context, settle bool, actual Money, opts []ChargeOption,
) (CloseResult, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done {
		return CloseResult{}, ErrHoldClosed
	}
	var (
		res CloseResult
		err error
	)
	if settle {
		res, err = h.svc.Settle(ctx, h.hold.ID, actual, opts...)
	} else {
		res, err = h.svc.Release(ctx, h.hold.ID)
	}
	if err == nil {
		h.done, h.hold = true, res.Hold
	}
	return res, err
}

// finish closes a hold the handler left open: settled at the estimate when
// the handler succeeded, released otherwise. It runs after the client may have
// gone, so it does not inherit the request's cancellation.
func (h *requestHold) finish(ctx context.Context, succeeded bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chargeTimeout)
	defer cancel()
	_, err := h.close(ctx, succeeded, h.hold.Amount, nil)
	if err != nil && !errors.Is(err, ErrHoldClosed) {
		// The hold stays open and expires: the budget gets the estimate back
		// then, and nothing is charged twice.
		h.svc.log.ErrorContext(ctx, "close hold after handler", "hold_id", h.hold.ID, logErr, err)
	}
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// HoldFromContext returns the hold the middleware made for this request.
func HoldFromContext(ctx context.Context) (Hold, bool) {
	c, ok := ctx.Value(contextKey{}).(*caller)
	if !ok || c.hold == nil {
		return Hold{}, false
	}
	c.hold.mu.Lock()
	defer c.hold.mu.Unlock()
	return c.hold.hold, true
}

// Release gives back the hold the middleware made for this request, when the
// work failed and should not be billed. It is ErrNoKey without a hold.
func Release(ctx context.Context) (CloseResult, error) {
	c, ok := ctx.Value(contextKey{}).(*caller)
	if !ok || c.hold == nil {
		return CloseResult{}, ErrNoKey
	}
	// As for Charge: a client that has left must not keep the hold open.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), chargeTimeout)
	defer cancel()
	return c.hold.close(ctx, false, 0, nil)
}
