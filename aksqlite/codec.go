package aksqlite

import (
	"database/sql"
	"encoding/json"
	"time"
)

// Times are stored as INTEGER unix microseconds, the precision the Service
// gives them, so that comparisons and ordering in SQL are exact; the zero
// time is NULL where a column may be absent.

func micros(t time.Time) int64 { return t.UnixMicro() }

// ceilMicros rounds t up to a whole microsecond, for bounds: a stored time,
// always whole microseconds, is >= t (or < t) exactly when it is >= (or <)
// ceilMicros(t).
func ceilMicros(t time.Time) int64 {
	us := t.UnixMicro()
	if t.Nanosecond()%1000 != 0 {
		us++
	}
	return us
}

func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

// fromMicros returns the UTC time of v; the zero time's microseconds give the
// zero time back.
func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// nullString stores the empty string as NULL, for unique and optional columns.
func nullString(s string) sql.NullString {
	return sql.NullString{String: s, Valid: s != ""}
}

// nullBytes stores an empty hash as NULL, so that it cannot collide in the
// unique index.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// encodeScopes writes nil scopes (unlimited) as NULL and any other slice,
// even an empty one, as a JSON array, so that both round-trip.
func encodeScopes(scopes []string) (sql.NullString, error) {
	if scopes == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(scopes)
	return sql.NullString{String: string(b), Valid: true}, err
}

func decodeScopes(v sql.NullString) ([]string, error) {
	if !v.Valid {
		return nil, nil
	}
	scopes := []string{}
	err := json.Unmarshal([]byte(v.String), &scopes)
	return scopes, err
}

// encodeMetadata writes nil metadata as NULL and any other map as JSON.
func encodeMetadata(md map[string]string) (sql.NullString, error) {
	if md == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(md)
	return sql.NullString{String: string(b), Valid: true}, err
}

func decodeMetadata(v sql.NullString) (map[string]string, error) {
	if !v.Valid {
		return nil, nil
	}
	var md map[string]string
	err := json.Unmarshal([]byte(v.String), &md)
	return md, err
}
