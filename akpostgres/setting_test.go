package akpostgres_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestSettings(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	_, err := s.Setting(ctx, "admin_token_hash")
	require.ErrorIs(t, err, agentkey.ErrNotFound)

	stored, err := s.PutSetting(ctx, "admin_token_hash", "h1", true)
	require.NoError(t, err)
	require.True(t, stored)
	stored, err = s.PutSetting(ctx, "admin_token_hash", "h2", true)
	require.NoError(t, err)
	require.False(t, stored, "a value is in place")
	v, err := s.Setting(ctx, "admin_token_hash")
	require.NoError(t, err)
	require.Equal(t, "h1", v)

	stored, err = s.PutSetting(ctx, "admin_token_hash", "h3", false)
	require.NoError(t, err)
	require.True(t, stored)
	v, err = s.Setting(ctx, "admin_token_hash")
	require.NoError(t, err)
	require.Equal(t, "h3", v)
}

func TestPutSettingIfAbsentConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	stores := newProcesses(t, 2)

	const callers = 20
	var winners atomic.Int64
	var winner atomic.Value
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			value := fmt.Sprintf("v%d", i)
			stored, err := stores[i%2].PutSetting(ctx, "first", value, true)
			if assertNoError(t, err) && stored {
				winners.Add(1)
				winner.Store(value)
			}
		})
	}
	wg.Wait()

	require.EqualValues(t, 1, winners.Load())
	v, err := stores[0].Setting(ctx, "first")
	require.NoError(t, err)
	require.Equal(t, winner.Load(), v)
}
