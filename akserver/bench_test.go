package akserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// BenchmarkAuthorizeSettle measures the decision API's hot path: authorize
// with an estimate (a hold), then settle the real cost, over keep-alive
// connections to a real server on loopback, on each store. "keys1000" spreads
// the calls over 1,000 keys; "hotkey" puts them all on one key, so that they
// queue on its budget's lock. "serial" is one client (the latency of the
// pair); "parallel" is GOMAXPROCS clients at once (ns/op is then wall time
// per pair, the inverse of throughput). conns reports the TCP connections
// opened: keep-alive keeps it at the number of clients.
func BenchmarkAuthorizeSettle(b *testing.B) {
	for _, sf := range storeFactories {
		b.Run(sf.Name, func(b *testing.B) {
			e := newEnv(b, sf, envOptions{quiet: true})
			ctx := context.Background()
			budget := []agentkey.BudgetSpec{
				{Limit: 1_000_000 * agentkey.Dollar, Period: agentkey.PeriodMonth},
			}
			var spread []string
			for i := range 1000 {
				ck, err := e.svc.CreateKey(ctx, agentkey.CreateKeyParams{
					AccountID: fmt.Sprintf("acct_%d", i%10), Scopes: []string{"proxy.chat"},
					Budgets: budget,
				})
				require.NoError(b, err)
				spread = append(spread, ck.Secret)
			}

			for _, keys := range []struct {
				name    string
				secrets []string
			}{{"keys1000", spread}, {"hotkey", spread[:1]}} {
				b.Run(keys.name+"/serial", func(b *testing.B) {
					benchDecisions(b, e, keys.secrets, 1)
				})
				b.Run(keys.name+"/parallel", func(b *testing.B) {
					benchDecisions(b, e, keys.secrets, runtime.GOMAXPROCS(0))
				})
				b.Run(keys.name+"/direct", func(b *testing.B) {
					benchDirect(b, e.svc, keys.secrets)
				})
			}
		})
	}
}

// benchDecisions runs b.N authorize+settle pairs from clients goroutines,
// cycling through secrets.
func benchDecisions(b *testing.B, e *env, secrets []string, clients int) {
	var conns atomic.Int64
	ts := httptest.NewUnstartedServer(e.srv.Handler())
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	defer ts.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	// The bodies are made before the clock starts.
	authorize := make([][]byte, len(secrets))
	for i, s := range secrets {
		authorize[i] = []byte(`{"credential":"` + s + `","scope":"proxy.chat","estimate":"0.01"}`)
	}
	var next atomic.Int64
	pair := func() error {
		i := int(next.Add(1)) % len(secrets)
		var d struct {
			Allow bool `json:"allow"`
			Hold  struct {
				ID string `json:"id"`
			} `json:"hold"`
		}
		if err := post(client, ts.URL+"/v1/authorize", e.service, authorize[i], &d); err != nil {
			return err
		}
		if !d.Allow {
			return fmt.Errorf("authorize refused")
		}
		settle := []byte(`{"hold_id":"` + d.Hold.ID + `","amount":"0.004"}`)
		return post(client, ts.URL+"/v1/settle", e.service, settle, nil)
	}

	b.ReportAllocs()
	b.ResetTimer()
	if clients == 1 {
		for b.Loop() {
			if err := pair(); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		b.SetParallelism(1)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := pair(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	b.StopTimer()
	b.ReportMetric(float64(conns.Load()), "conns")
}

// benchDirect does what the decision API does for an authorize+settle pair,
// calling the Service directly: the difference from "serial" is the cost of
// HTTP and JSON.
func benchDirect(b *testing.B, svc *agentkey.Service, secrets []string) {
	ctx := context.Background()
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		v, err := svc.Validate(ctx, secrets[i%len(secrets)])
		if err != nil || v.Check("proxy.chat") != "" {
			b.Fatal(err, v.Reason)
		}
		res, err := svc.Reserve(ctx, v.Key.ID, agentkey.Cent)
		if err != nil || !res.OK() {
			b.Fatal(err, res.Reason)
		}
		if _, err := svc.Settle(ctx, res.Hold.ID, 4*agentkey.Cent/10); err != nil {
			b.Fatal(err)
		}
	}
}

// post sends body with the service token and decodes a 200 answer into v.
func post(client *http.Client, url, token string, body []byte, v any) error {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(res.Body)
		return fmt.Errorf("%s: %d %s", url, res.StatusCode, raw)
	}
	if v != nil {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			return err
		}
	}
	_, err = io.Copy(io.Discard, res.Body) // drain, so the connection is reused
	return err
}
