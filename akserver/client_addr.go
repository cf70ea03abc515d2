package akserver

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddrFromHeader returns a function for agentkey.SelfServeOptions'
// ClientAddr that takes a request's client address from header, such as
// X-Forwarded-For or X-Real-IP, as the reverse proxy in front of the server
// sets it. It reads the last address of the header's last line: the one the
// proxy nearest to the server appended, since a client can send an
// X-Forwarded-For of its own choosing, which proxies keep in front. Behind a
// chain of proxies, have the one facing clients set a header of its own and
// name that one. An IPv6 address stands for its /64, as in the default. A
// request whose header holds no address counts against the address of its
// connection, which is the proxy's.
//
// Name a header only when every request passes through a proxy that sets it:
// a client that reaches the server directly chooses its own address.
func ClientAddrFromHeader(header string) func(*http.Request) string {
	header = http.CanonicalHeaderKey(header)
	return func(r *http.Request) string {
		if lines := r.Header.Values(header); len(lines) > 0 {
			last := lines[len(lines)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if addr, ok := parseAddr(strings.TrimSpace(last)); ok {
				return group(addr)
			}
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		if addr, ok := parseAddr(host); ok {
			return group(addr)
		}
		return host
	}
}

// parseAddr parses an IP address, with or without a port or brackets.
func parseAddr(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), true
	}
	addr, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	return addr, err == nil
}

// group returns the address that a rate limit counts: an IPv4 address, or an
// IPv6 address's /64, since one host usually has all of it.
func group(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
