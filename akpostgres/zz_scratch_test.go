package akpostgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

type timer struct {
	mu    sync.Mutex
	start time.Time
	seq   int
	durs  map[int]time.Duration
	n     map[int]int
}

func (r *timer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.start = time.Now()
	return ctx
}
func (r *timer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {
	r.durs[100+r.seq] += time.Since(r.start)
	r.n[100+r.seq]++
	r.seq++
}
func (r *timer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.start = time.Now()
	return ctx
}
func (r *timer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *timer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.durs[r.seq] += time.Since(r.start)
	r.n[r.seq]++
	r.seq++
}

func TestZZScratch(t *testing.T) {
	ctx := t.Context()
	schema, url := pgtest.NewSchema(ctx, t)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	tm := &timer{durs: map[int]time.Duration{}, n: map[int]int{}}
	cfg.ConnConfig.Tracer = tm
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := akpostgres.New(pool, akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.CreateAccount(ctx, account("org", "", agentkey.MaxMoney/2), agentkey.MaxDepth))
	require.NoError(t, s.CreateAccount(ctx, account("team", "org", agentkey.MaxMoney/2), agentkey.MaxDepth))
	k := keyRecord(agentkey.MaxMoney / 2)
	k.AccountID = "team"
	require.NoError(t, s.CreateKey(ctx, k))
	for i := 0; i < 50; i++ {
		req := charge("", agentkey.Cent)
		req.KeyHash = k.Hash
		_, err := s.Charge(ctx, req)
		require.NoError(t, err)
	}
	tm.durs = map[int]time.Duration{}
	tm.n = map[int]int{}
	const N = 2000
	st := time.Now()
	for i := 0; i < N; i++ {
		tm.seq = 0
		req := charge("", agentkey.Cent)
		req.KeyHash = k.Hash
		_, err := s.Charge(ctx, req)
		require.NoError(t, err)
	}
	fmt.Println("per charge", time.Since(st)/N)
	for i, d := range tm.durs {
		fmt.Println("trip", i, d/time.Duration(tm.n[i]), tm.n[i])
	}
	rows, err := pool.Query(ctx, "select left(regexp_replace(statement, '\\s+', ' ', 'g'), 90), generic_plans, custom_plans from pg_prepared_statements")
	require.NoError(t, err)
	for rows.Next() {
		var st string
		var g, c int64
		require.NoError(t, rows.Scan(&st, &g, &c))
		fmt.Println(g, c, st)
	}
	require.NoError(t, rows.Err())
	_ = akpostgres.DefaultTablePrefix
}
