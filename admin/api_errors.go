package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/pgtenant/pgtenant/tenants"
)

// apiError is an error the API answers with: an HTTP status, a stable code
// for programs and a message for humans saying what to do.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, "bad_request", fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *apiError {
	return &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf(format, args...)}
}

// storeErrors maps the tenants sentinel errors to answers. The store's
// message says which value was wrong, so it is passed on.
var storeErrors = []struct {
	err    error
	status int
	code   string
}{
	{tenants.ErrInvalid, http.StatusBadRequest, "invalid"},
	{tenants.ErrNotFound, http.StatusNotFound, "not_found"},
	{tenants.ErrExists, http.StatusConflict, "already_exists"},
	{tenants.ErrInvalidTransition, http.StatusConflict, "invalid_transition"},
	{tenants.ErrVersionConflict, http.StatusPreconditionFailed, "version_conflict"},
}

// writeError is the one place that turns a handler's error into an answer.
// Errors that are neither apiErrors nor the store's are logged and answered
// with a 500 that reveals nothing of them.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		for _, se := range storeErrors {
			if errors.Is(err, se.err) {
				ae = &apiError{se.status, se.code, err.Error()}
				break
			}
		}
	}
	if ae == nil {
		a.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("admin API: internal error")
		ae = &apiError{http.StatusInternalServerError, "internal", "internal error; the pgtenant log has the cause"}
	}
	writeJSON(w, ae.status, errorBody{errorDetail{ae.code, ae.message}})
}

// writeJSON answers with v as JSON. Encoding errors can only be write
// errors by then: the client has gone.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody reads a JSON object into v: at most MaxRequestBody bytes,
// unknown fields refused, nothing after the object. An empty body leaves v
// alone when optional, and is an error otherwise.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &apiError{http.StatusUnsupportedMediaType, "unsupported_media_type",
				fmt.Sprintf("the request body must be JSON (Content-Type: application/json), not %q", ct)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if errors.Is(err, io.EOF) {
		if optional {
			return nil
		}
		return badRequest("the request body is empty; send a JSON object")
	}
	if err != nil {
		return bodyError(err)
	}
	if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
		if err != nil && !isSyntaxError(err) {
			return bodyError(err)
		}
		return badRequest("the request body has more after the JSON object; send one object")
	}
	return nil
}

// bodyError explains why a request body could not be decoded.
func bodyError(err error) error {
	var (
		tooLarge  *http.MaxBytesError
		syntax    *json.SyntaxError
		wrongType *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return &apiError{http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the request body is larger than %d bytes", MaxRequestBody)}
	case errors.As(err, &syntax):
		return &apiError{http.StatusBadRequest, "invalid_json",
			fmt.Sprintf("the request body is not valid JSON: %s (at byte %d)", syntax, syntax.Offset)}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &apiError{http.StatusBadRequest, "invalid_json", "the request body ends in the middle of the JSON object"}
	case errors.As(err, &wrongType):
		if wrongType.Field == "" {
			return &apiError{http.StatusBadRequest, "invalid_json",
				fmt.Sprintf("the request body must be a JSON object, not a %s", wrongType.Value)}
		}
		return &apiError{http.StatusBadRequest, "invalid_field",
			fmt.Sprintf("field %q must be a %s, not a %s", wrongType.Field, jsonKind(wrongType.Type.Kind().String()), wrongType.Value)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for it.
		field := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return &apiError{http.StatusBadRequest, "unknown_field",
			fmt.Sprintf("the request body has an unknown field %s; the accepted fields are in the schema at %s/openapi.yaml", field, APIPrefix)}
	}
	// A field's own UnmarshalJSON refused its value (a duration, a status
	// ...); its message names the value.
	return &apiError{http.StatusBadRequest, "invalid_field", "the request body has an invalid value: " + err.Error()}
}

func isSyntaxError(err error) bool {
	var syntax *json.SyntaxError
	return errors.As(err, &syntax)
}

// jsonKind names a Go kind as a JSON type.
func jsonKind(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"), strings.HasPrefix(kind, "float"):
		return "number"
	case kind == "bool":
		return "boolean"
	case kind == "map", kind == "struct":
		return "object"
	case kind == "slice", kind == "array":
		return "array"
	}
	return kind
}

// noRoute answers requests under APIPrefix that no route takes: 405 with
// Allow when the path exists with other methods, 404 otherwise.
func (a *API) noRoute(w http.ResponseWriter, r *http.Request, own *http.ServeMux) {
	w.Header().Set("Cache-Control", "no-store")
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := own.Handler(probe); pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		if slices.Contains(allowed, http.MethodGet) {
			allowed = append(allowed, http.MethodHead)
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		a.writeError(w, r, &apiError{http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allowed, ", "))})
		return
	}
	a.writeError(w, r, &apiError{http.StatusNotFound, "no_such_endpoint",
		fmt.Sprintf("there is no endpoint %s; the endpoints are listed in %s/openapi.yaml", r.URL.Path, APIPrefix)})
}
