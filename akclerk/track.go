package akclerk

import (
	"context"

	"github.com/agentkey-go/agentkey"
)

// TrackByAPIKey charges cost to the budget row of subject, the subject of a
// Clerk API key (a user_ or org_ id), after the billable work. It is
// agentkey's TrackUsageBySubject under the reference's name: the charge is
// all or nothing, exact to the micro-unit, and refused with
// ReasonBudgetExceeded if it would pass a limit, or ReasonInvalidKey if the
// subject has no row or its row is revoked or expired. Pass
// agentkey.WithIdempotencyKey to make a retried charge count once.
//
// In a handler behind APIKeyMiddleware, agentkey.Charge(r.Context(), cost)
// charges the same row one store read sooner, and is the one to use when the
// middleware holds an Estimate: it settles the hold, where TrackByAPIKey
// would charge besides it. TrackByAPIKey also serves work billed outside the
// request, such as a background job that knows the subject.
func TrackByAPIKey(ctx context.Context, svc *agentkey.Service, subject string, cost agentkey.Money,
	opts ...agentkey.ChargeOption,
) (agentkey.ChargeResult, error) {
	return svc.TrackUsageBySubject(ctx, subject, cost, opts...)
}

// TrackByM2M charges cost to the budget row of a machine, the subject of a
// Clerk M2M token (an mch_ id), after the billable work, as TrackByAPIKey
// does for customers.
func TrackByM2M(ctx context.Context, svc *agentkey.Service, subject string, cost agentkey.Money,
	opts ...agentkey.ChargeOption,
) (agentkey.ChargeResult, error) {
	return svc.TrackUsageBySubject(ctx, subject, cost, opts...)
}
