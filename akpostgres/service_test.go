package akpostgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestService runs the Service on the store, as an application does.
func TestService(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	svc, err := agentkey.New(s, agentkey.Config{})
	require.NoError(t, err)
	// t.Context is canceled before cleanups run.
	t.Cleanup(func() { require.NoError(t, svc.Close(context.WithoutCancel(ctx))) })

	created, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
		AccountID: "acct_1",
		Scopes:    []string{"chat"},
		Budgets:   []agentkey.BudgetSpec{{Limit: agentkey.Dollar, Period: agentkey.PeriodMonth}},
	})
	require.NoError(t, err)

	v, err := svc.Validate(ctx, created.Secret)
	require.NoError(t, err)
	require.True(t, v.OK())
	require.Equal(t, created.Key.ID, v.Key.ID)

	res, err := svc.TrackUsage(ctx, created.Secret, 40*agentkey.Cent,
		agentkey.WithIdempotencyKey("req-1"), agentkey.WithMetadata(map[string]string{"model": "m"}))
	require.NoError(t, err)
	require.True(t, res.OK())
	res, err = svc.TrackUsage(ctx, created.Secret, 40*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
	require.NoError(t, err)
	require.True(t, res.Replayed)
	res, err = svc.TrackUsage(ctx, created.Secret, 70*agentkey.Cent)
	require.NoError(t, err)
	require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

	sub, ok, err := svc.EnsureSubject(ctx, "user_1", agentkey.SubjectParams{})
	require.NoError(t, err)
	require.True(t, ok)
	res, err = svc.TrackUsageBySubject(ctx, "user_1", agentkey.Cent)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Equal(t, sub.ID, res.Key.ID)

	report, err := svc.Audit(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, report.Budgets)
	require.True(t, report.Clean(), "drifts: %+v", report.Drifts)

	_, err = svc.Revoke(ctx, created.Key.ID, "acct_1")
	require.NoError(t, err)
	v, err = svc.Validate(ctx, created.Secret)
	require.NoError(t, err)
	require.Equal(t, agentkey.ReasonRevoked, v.Reason)
}
