package akserver

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentkey-go/agentkey"
)

// Token formats: a prefix, then 24 random bytes (192 bits) as 48 lowercase
// hex characters.
const (
	AdminTokenPrefix   = "akadm_"
	ServiceTokenPrefix = "aksvc_"
	tokenBytes         = 24
)

// Settings under which tokens are kept, always as the hex SHA-256 hash of the
// token, never the token. A service token is kept twice: by name, so that it
// can be revoked by name, and by hash, so that a presented token is found in
// one read. A revoked token's settings are set to the empty string, since a
// Store cannot delete a setting.
const (
	settingAdminToken     = "akserver.admin_token.sha256"
	settingServiceName    = "akserver.service_token.name."    // + name -> hash
	settingServiceHash    = "akserver.service_token.hash."    // + hash -> name
	settingServiceCreated = "akserver.service_token.created." // + name -> RFC 3339 time
	maxServiceTokenName   = 64
)

// EnsureAdminToken creates the admin token if the store has none and returns
// it with created set. Only its hash is stored, so the token is returned this
// once; when a token exists already, it returns "" and false. Several
// processes starting at once create one token between them.
func EnsureAdminToken(ctx context.Context, store agentkey.Store,
) (token string, created bool, err error) {
	token, hash := newToken(AdminTokenPrefix)
	created, err = store.PutSetting(ctx, settingAdminToken, hash, true)
	if err != nil {
		return "", false, fmt.Errorf("ensure admin token: %w", err)
	}
	if !created {
		return "", false, nil
	}
	return token, true, nil
}

// RotateAdminToken replaces the admin token with a new one and returns it,
// once. The old token stops working at once.
func RotateAdminToken(ctx context.Context, store agentkey.Store) (string, error) {
	token, hash := newToken(AdminTokenPrefix)
	if _, err := store.PutSetting(ctx, settingAdminToken, hash, false); err != nil {
		return "", fmt.Errorf("rotate admin token: %w", err)
	}
	return token, nil
}

// CreateServiceToken creates a token named name for a service calling the
// decision API, and returns it, once. Names are 1 to 64 letters, digits,
// dots, dashes and underscores. A name with a live token is ErrConflict:
// revoke it first.
func CreateServiceToken(ctx context.Context, store agentkey.Store, name string) (string, error) {
	if err := checkTokenName(name); err != nil {
		return "", fmt.Errorf("create service token: %w", err)
	}
	current, err := store.Setting(ctx, settingServiceName+name)
	switch {
	case err == nil && current != "":
		return "", fmt.Errorf("create service token %s: %w", name, agentkey.ErrConflict)
	case err != nil && !errors.Is(err, agentkey.ErrNotFound):
		return "", fmt.Errorf("create service token %s: %w", name, err)
	}
	fresh := err != nil // never used, as opposed to revoked

	token, hash := newToken(ServiceTokenPrefix)
	if _, err := store.PutSetting(ctx, settingServiceHash+hash, name, true); err != nil {
		return "", fmt.Errorf("create service token %s: %w", name, err)
	}
	stored, err := store.PutSetting(ctx, settingServiceName+name, hash, fresh)
	if err != nil {
		return "", fmt.Errorf("create service token %s: %w", name, err)
	}
	if !stored {
		// Another process created this name meanwhile; the hash's entry
		// points at a name whose hash differs, so the token would be refused
		// anyway, but leave nothing behind that looks live.
		_, _ = store.PutSetting(ctx, settingServiceHash+hash, "", false)
		return "", fmt.Errorf("create service token %s: %w", name, agentkey.ErrConflict)
	}
	created := time.Now().UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
	if _, err := store.PutSetting(ctx, settingServiceCreated+name, created, false); err != nil {
		// A token that cannot be listed is not handed out.
		_, _ = revokeServiceToken(ctx, store, name)
		return "", fmt.Errorf("create service token %s: %w", name, err)
	}
	return token, nil
}

// ServiceToken describes a live service token. Its token is shown once,
// when it is made, and only its hash is kept; neither is ever listed.
type ServiceToken struct {
	Name string `json:"name"`
	// CreatedAt is when the name's current token was made.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// ServiceTokens lists the live service tokens by name; none is an empty
// slice, not nil.
func ServiceTokens(ctx context.Context, store agentkey.Store) ([]ServiceToken, error) {
	hashes, err := store.Settings(ctx, settingServiceName)
	if err != nil {
		return nil, fmt.Errorf("list service tokens: %w", err)
	}
	created, err := store.Settings(ctx, settingServiceCreated)
	if err != nil {
		return nil, fmt.Errorf("list service tokens: %w", err)
	}
	tokens := []ServiceToken{}
	for setting, hash := range hashes {
		if hash == "" {
			continue // revoked
		}
		name := strings.TrimPrefix(setting, settingServiceName)
		t := ServiceToken{Name: name}
		t.CreatedAt, _ = time.Parse(time.RFC3339Nano, created[settingServiceCreated+name]) // zero when unknown
		tokens = append(tokens, t)
	}
	slices.SortFunc(tokens, func(a, b ServiceToken) int { return strings.Compare(a.Name, b.Name) })
	return tokens, nil
}

// RevokeServiceToken revokes the service token named name, or returns
// ErrNotFound. A server that verified the token recently keeps accepting it
// for up to its Config.ServiceTokenTTL (see Server); the server whose admin
// API revokes it stops at once.
func RevokeServiceToken(ctx context.Context, store agentkey.Store, name string) error {
	_, err := revokeServiceToken(ctx, store, name)
	return err
}

// revokeServiceToken revokes a service token and returns its hash.
func revokeServiceToken(ctx context.Context, store agentkey.Store, name string) (string, error) {
	if err := checkTokenName(name); err != nil {
		return "", fmt.Errorf("revoke service token: %w", err)
	}
	hash, err := store.Setting(ctx, settingServiceName+name)
	if err == nil && hash == "" {
		err = agentkey.ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("revoke service token %s: %w", name, err)
	}
	if _, err := store.PutSetting(ctx, settingServiceName+name, "", false); err != nil {
		return "", fmt.Errorf("revoke service token %s: %w", name, err)
	}
	if _, err := store.PutSetting(ctx, settingServiceHash+hash, "", false); err != nil {
		return "", fmt.Errorf("revoke service token %s: %w", name, err)
	}
	return hash, nil
}

func checkTokenName(name string) error {
	odd := func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
			r == '.' || r == '-' || r == '_')
	}
	if name == "" || len(name) > maxServiceTokenName || strings.ContainsFunc(name, odd) {
		return fmt.Errorf("%w: name %q must be 1 to %d letters, digits, dots, dashes or "+
			"underscores", agentkey.ErrInvalidArgument, truncate(name, 40), maxServiceTokenName)
	}
	return nil
}

// newToken returns a fresh token behind prefix and its hex SHA-256 hash.
func newToken(prefix string) (token, hash string) {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	token = prefix + hex.EncodeToString(b)
	return token, hashToken(token)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// wellFormed reports whether token is prefix and 48 lowercase hex
// characters. Anything else is refused before any store read.
func wellFormed(token, prefix string) bool {
	if len(token) != len(prefix)+2*tokenBytes || !strings.HasPrefix(token, prefix) {
		return false
	}
	for _, c := range []byte(token[len(prefix):]) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// equalHashes compares two hex hashes in constant time.
func equalHashes(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// checkAdminToken reports whether token is the admin token. The hash is read
// from the store on every call, so that a rotation takes effect at once; the
// admin API is not a hot path.
func checkAdminToken(ctx context.Context, store agentkey.Store, token string) (bool, error) {
	if !wellFormed(token, AdminTokenPrefix) {
		return false, nil
	}
	want, err := store.Setting(ctx, settingAdminToken)
	if errors.Is(err, agentkey.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read admin token: %w", err)
	}
	return want != "" && equalHashes(hashToken(token), want), nil
}
