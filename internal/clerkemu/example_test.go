package clerkemu_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/clerk/clerk-sdk-go/v2"
	"github.com/clerk/clerk-sdk-go/v2/apikey"
	"github.com/clerk/clerk-sdk-go/v2/m2m_token"

	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// The SDK is pointed at the emulator through its backend URL and key, the
// settings production code points at Clerk.
func Example() {
	emu := clerkemu.New("sk_test_emulator")
	defer emu.Close()

	emu.AddAPIKey("ak_secret", clerkemu.APIKey{
		Name:    "ci",
		Subject: "user_2abc",
		Scopes:  []string{"read"},
	})

	client := apikey.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
		URL: clerk.String(emu.URL()),
		Key: clerk.String(emu.SecretKey()),
	}})
	key, err := client.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(key.Subject, key.Scopes, key.Revoked)

	_, err = client.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_unknown"})
	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.HTTPStatusCode, apiErr.Errors[0].Code)
	}
	// Output:
	// user_2abc [read] false
	// 404 resource_not_found
}

// A machine-to-machine token is verified the same way, through the SDK's
// m2m_token client.
func ExampleServer_AddM2MToken() {
	emu := clerkemu.New("sk_test_emulator")
	defer emu.Close()

	emu.AddM2MToken("mt_token", clerkemu.M2MToken{Subject: "mch_2caller"})
	emu.RevokeM2MToken("mt_token", "rotated")

	client := m2m_token.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
		URL: clerk.String(emu.URL()),
		Key: clerk.String(emu.SecretKey()),
	}})
	tok, err := client.Verify(context.Background(), &m2m_token.VerifyParams{Token: "mt_token"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(tok.Object, tok.Subject, tok.Revoked, *tok.RevocationReason)
	// Output: machine_to_machine_token mch_2caller true rotated
}

// Faults are injected while the server runs; a rate-limited request is
// answered 429 with a Retry-After header in seconds.
func ExampleServer_RateLimit() {
	emu := clerkemu.New("sk_test_emulator")
	defer emu.Close()
	emu.RateLimit(3 * time.Second)

	client := apikey.NewClient(&clerk.ClientConfig{BackendConfig: clerk.BackendConfig{
		URL: clerk.String(emu.URL()),
		Key: clerk.String(emu.SecretKey()),
	}})
	_, err := client.Verify(context.Background(), &apikey.VerifyParams{Secret: "ak_secret"})

	var apiErr *clerk.APIErrorResponse
	if errors.As(err, &apiErr) {
		fmt.Println(apiErr.HTTPStatusCode, apiErr.Response.Header.Get("Retry-After"))
	}
	fmt.Println(emu.Calls("/v1/api_keys/verify"))
	// Output:
	// 429 3
	// 1
}
