package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/pgtenant/pgtenant/audit"
	"github.com/pgtenant/pgtenant/pgerr"
	"github.com/pgtenant/pgtenant/poolmgr"
	"github.com/pgtenant/pgtenant/proxy/wire"
)

const (
	protocolMajor3 = 3
	// maxPasswordMessage bounds the PasswordMessage (the JWT) a client may send.
	maxPasswordMessage = 64 << 10
)

// errNoStartup is returned for connections that end after an SSL/GSS probe
// or a CancelRequest: no session, nothing to report.
var errNoStartup = fmt.Errorf("connection carried no session")

// login runs the startup exchange: TLS negotiation, the StartupMessage, the
// JWT as a cleartext password, and the greeting a real server sends. It
// leaves the session ready for its first query.
func (s *session) login(ctx context.Context) error {
	_ = s.conn.SetDeadline(time.Now().Add(s.srv.cfg.LoginTimeout))
	startup, err := s.readStartup()
	if err != nil {
		return err
	}
	if s.srv.cfg.RequireTLS && !s.tls {
		return pgerr.NewFatal(pgerr.InvalidAuthorization, "tls_required", "pgtenant requires an encrypted connection: the token is sent as a password").
			WithHint("Connect with sslmode=require (or verify-full).")
	}
	if s.srv.clientCount() > s.srv.cfg.MaxClientConns {
		return pgerr.NewFatal(pgerr.TooManyConnections, "too_many_clients", "sorry, too many clients already").
			WithHint("Raise client.max_connections or reduce the number of client connections.")
	}
	params := startup.Parameters
	if v, ok := params["replication"]; ok && v != "false" && v != "off" && v != "0" && v != "no" {
		return pgerr.NewFatal(pgerr.FeatureNotSupported, "replication", "replication connections are not supported through pgtenant")
	}

	startupSettings, err := sessionParamsFromStartup(params, s.srv.cfg.Setting)
	if err != nil {
		return err
	}
	token, err := s.readPassword()
	if err == nil {
		s.id, err = s.srv.auth.Verify(token)
	}
	if err != nil {
		var pe *pgerr.Error
		if errors.As(err, &pe) {
			s.srv.metrics.authFailures.WithLabelValues(pe.Reason).Inc()
			s.audit(audit.ReasonAuthFailed, pe.Reason, pe.Code, "", pe.Message)
		}
		return err
	}
	id := s.id
	db := params["database"]
	if db == "" {
		db = params["user"]
	}
	if mapped, ok := s.srv.cfg.Databases[db]; ok {
		db = mapped
	}
	if err := s.admitTenant(); err != nil {
		var pe *pgerr.Error
		if errors.As(err, &pe) {
			s.srv.metrics.authFailures.WithLabelValues(pe.Reason).Inc()
			s.audit(audit.ReasonTenantRefused, pe.Reason, pe.Code, "", pe.Message)
		}
		return err
	}
	s.stats = s.srv.metrics.tenant(id.Org)
	s.key = poolmgr.Key{Database: db, Tenant: id.Org}
	s.sessionMode = s.srv.pools.Mode(s.key) == poolmgr.ModeSession
	s.log = s.log.With().Str("tenant", id.Org).Str("database", db).Logger()

	server, err := s.srv.serverParams(ctx, s.key)
	if err != nil {
		return err
	}
	s.startup = startupSettings
	s.mu.params = cloneParams(startupSettings)
	if err := s.checkStartupSettings(ctx); err != nil {
		return err
	}
	pid, secret := s.srv.registerCancelKey(s)
	buf := s.w.AvailableBuffer()
	buf, _ = (&pgproto3.AuthenticationOk{}).Encode(buf)
	// The server's report, with the client's own settings where it made
	// some: they are applied when its first transaction starts.
	if _, ok := startupSettings["application_name"]; !ok {
		s.mu.params["application_name"] = ""
	}
	s.mu.reported = make(map[string]string, len(server))
	for name, value := range server {
		if v, ok := s.mu.params[strings.ToLower(name)]; ok {
			value = v
		}
		s.mu.reported[name] = value
		buf, _ = (&pgproto3.ParameterStatus{Name: name, Value: value}).Encode(buf)
	}
	buf, _ = (&pgproto3.BackendKeyData{ProcessID: pid, SecretKey: secret[:]}).Encode(buf)
	buf, _ = (&pgproto3.ReadyForQuery{TxStatus: 'I'}).Encode(buf)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	_ = s.conn.SetDeadline(time.Time{})
	s.mu.Lock()
	ended := s.mu.ended
	s.mu.Unlock()
	if ended != nil { // the tenant was suspended while the client logged in
		return ended
	}
	s.log.Debug().Str("subject", id.Subject).Msg("client logged in")
	return nil
}

// readStartup reads startup packets until a StartupMessage, answering SSL and
// GSSAPI encryption probes and serving a CancelRequest.
func (s *session) readStartup() (*pgproto3.StartupMessage, error) {
	for {
		code, body, err := wire.ReadStartupPacket(s.r)
		if err != nil {
			if s.sawProbe && isEOF(err) {
				return nil, errNoStartup
			}
			return nil, pgerr.NewFatal(pgerr.ProtocolViolation, "bad_startup", "invalid startup packet").Wrap(err)
		}
		switch code {
		case wire.SSLRequestCode:
			s.sawProbe = true
			if s.tls || s.r.Buffered() > 0 {
				return nil, pgerr.NewFatal(pgerr.ProtocolViolation, "bad_startup", "unexpected SSLRequest")
			}
			if s.srv.cfg.TLS == nil {
				if _, err := s.conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := s.conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(s.conn, s.srv.cfg.TLS)
			if err := tc.Handshake(); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			s.conn = tc
			s.tls = true
			s.r.Reset(tc)
		case wire.GSSENCRequestCode:
			s.sawProbe = true
			if _, err := s.conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case wire.CancelRequestCode:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err == nil {
				s.srv.cancel(cr.ProcessID, cr.SecretKey)
			}
			return nil, errNoStartup
		default:
			if code>>16 != protocolMajor3 {
				return nil, pgerr.NewFatal(pgerr.FeatureNotSupported, "bad_startup",
					fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0", code>>16, code&0xffff))
			}
			// Decode as 3.0 whatever the minor version: the layout is the same.
			body[2], body[3] = 0, 0
			var sm pgproto3.StartupMessage
			if err := sm.Decode(body); err != nil {
				return nil, pgerr.NewFatal(pgerr.ProtocolViolation, "bad_startup", "invalid startup packet").Wrap(err)
			}
			var unknown []string
			for k := range sm.Parameters {
				if strings.HasPrefix(k, "_pq_.") {
					unknown = append(unknown, k)
					delete(sm.Parameters, k)
				}
			}
			if code&0xffff != 0 || len(unknown) > 0 {
				// Negotiate down to 3.0, as PostgreSQL 15 does.
				msg, _ := (&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown}).Encode(nil)
				if _, err := s.w.Write(msg); err != nil {
					return nil, err
				}
			}
			return &sm, nil
		}
	}
}

// readPassword asks for a cleartext password and returns it: the JWT.
func (s *session) readPassword() (string, error) {
	msg, _ := (&pgproto3.AuthenticationCleartextPassword{}).Encode(nil)
	if _, err := s.w.Write(msg); err != nil {
		return "", err
	}
	if err := s.w.Flush(); err != nil {
		return "", err
	}
	h, err := wire.PeekHeader(s.r, maxPasswordMessage)
	if err != nil {
		if isEOF(err) {
			// psql connects once without a password to learn it needs one.
			return "", errNoStartup
		}
		return "", pgerr.NewFatal(pgerr.InvalidPassword, "malformed", "password authentication failed: the password message is invalid or too large").Wrap(err)
	}
	if h.Type != 'p' {
		return "", pgerr.NewFatal(pgerr.ProtocolViolation, "bad_startup", fmt.Sprintf("expected a password message, got message type %q", h.Type))
	}
	frame, err := wire.ReadFrame(s.r, h, &s.scratch)
	if err != nil {
		return "", err
	}
	token, _, err := wire.CString(wire.Body(frame))
	if err != nil {
		return "", pgerr.NewFatal(pgerr.ProtocolViolation, "bad_startup", "invalid password message")
	}
	return token, nil
}

// serverParams returns the ParameterStatus set of the backend database,
// learning it from a backend connection the first time. This also surfaces
// an unknown database or an unreachable backend at login, where a client
// expects it.
func (s *Server) serverParams(ctx context.Context, key poolmgr.Key) (map[string]string, error) {
	if p, ok := s.params.Load(key.Database); ok {
		return p.(map[string]string), nil
	}
	lease, err := s.pools.Acquire(ctx, key)
	if err != nil {
		return nil, err
	}
	p := lease.Conn().params
	lease.Release()
	s.params.Store(key.Database, p)
	return p, nil
}

// newClientIO returns buffered reader and writer sizes for client sockets.
func newClientIO(s *session) {
	s.r = bufio.NewReaderSize(s.conn, clientReadBuffer)
	s.w = bufio.NewWriterSize(clientWriter{s}, clientWriteBuffer)
}
