// Package clerkemu emulates the parts of Clerk's Backend API that agentkey
// uses, so that tests can drive the official Go SDK against a local server.
//
// A test starts a [Server] with an instance secret key, seeds it with API keys
// and machine-to-machine tokens, and points the SDK at [Server.URL] through
// clerk.BackendConfig's URL and Key, exactly as production code points it at
// https://api.clerk.com/v1. The emulator serves two endpoints:
//
//	POST /v1/api_keys/verify    body {"secret": "..."}
//	POST /v1/m2m_tokens/verify  body {"token": "..."}
//
// Both answer 200 with Clerk's resource object for a known credential, even
// when it is revoked or expired (the flags say so, as Clerk does), 404 for an
// unknown one, 400 for a missing or malformed parameter and 401 when the
// request does not carry "Authorization: Bearer <instance secret key>".
// Errors use Clerk's error body, {"errors":[{"message", "long_message",
// "code"}], "clerk_trace_id"}, which the SDK decodes into a
// *clerk.APIErrorResponse.
//
// Faults are injected with [Server.FailWith], [Server.FailWithBody] (an
// answer that is not Clerk's, such as a proxy's HTML page),
// [Server.RateLimit], [Server.SetLatency] and [Server.Hang], and
// [Server.Calls] counts the requests that reached each path, so tests can
// check retries and caching.
package clerkemu
