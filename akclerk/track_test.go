package akclerk_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// TestTrack checks TrackByAPIKey and TrackByM2M charging a subject after the
// work.
func TestTrack(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, &sf, akclerk.VerifierConfig{})
				ctx := t.Context()
				subject, secret := ct.subject(), newSecret()
				ct.add(e.emu, secret, subject, "")
				h := ct.middleware(e, gateOptions{defaults: agentkey.SubjectParams{
					Budgets: monthly(agentkey.Dollar),
				}})(handler(ct, 0))
				require.Equal(t, http.StatusOK, serve(h, secret).Code)

				res, err := ct.track(ctx, e.svc, subject, 25*agentkey.Cent,
					agentkey.WithIdempotencyKey("req_1"))
				require.NoError(t, err)
				require.True(t, res.OK())
				require.Equal(t, 25*agentkey.Cent, res.Charged)
				require.Equal(t, 75*agentkey.Cent, res.Key.Budgets[0].Remaining())

				res, err = ct.track(ctx, e.svc, subject, 25*agentkey.Cent,
					agentkey.WithIdempotencyKey("req_1"))
				require.NoError(t, err)
				require.True(t, res.Replayed, "a retried charge counts once")

				res, err = ct.track(ctx, e.svc, subject, agentkey.Dollar)
				require.NoError(t, err)
				require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

				res, err = ct.track(ctx, e.svc, ct.subject(), agentkey.Cent)
				require.NoError(t, err)
				require.Equal(t, agentkey.ReasonInvalidKey, res.Reason, "a subject never seen")

				v, err := e.svc.ValidateBySubject(ctx, subject)
				require.NoError(t, err)
				require.Equal(t, 25*agentkey.Cent, v.Key.Budgets[0].Used)
			})
		}
	})
}
