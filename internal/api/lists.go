package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/lists"
)

// The lists' routes: analysts read and change the contents of the lists the rules declare.
// A value is one path segment, URL-escaped by the client: an IPv6 address, or a token with a
// slash sent as %2F.

// needLists answers 503 lists_unavailable when the server has no lists' store.
func (s *Server) needLists(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.lists == nil {
			writeError(w, http.StatusServiceUnavailable, "lists_unavailable", "this instance keeps no lists")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// routePath is the path chi routes on: the escaped one when it differs from the decoded one (a
// %2F in a segment), else the decoded one.
func routePath(r *http.Request) string {
	if r.URL.RawPath != "" {
		return r.URL.RawPath
	}
	return r.URL.Path
}

// pathParam returns a path parameter decoded: chi gives it escaped when it routed on the raw path.
func pathParam(w http.ResponseWriter, r *http.Request, name string) (string, bool) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, true
	}
	d, err := url.PathUnescape(v)
	if err != nil || !utf8.ValidString(d) {
		writeError(w, http.StatusBadRequest, "invalid_request", "the path is not validly escaped UTF-8")
		return "", false
	}
	return d, true
}

// limitParam reads the limit parameter: def when absent; the store checks its range.
func limitParam(w http.ResponseWriter, q url.Values, def int) (int, bool) {
	v := q.Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a number from 1 to "+strconv.Itoa(lists.MaxPage))
		return 0, false
	}
	return n, true
}

type listView struct {
	Name        string `json:"name"`
	Kind        string `json:"kind"`
	Description string `json:"description"`
	Items       int    `json:"items"`
}

func (s *Server) getLists(w http.ResponseWriter, r *http.Request) {
	counts, err := s.lists.Counts(r.Context())
	if err != nil {
		s.storeError(w, err)
		return
	}
	out := struct {
		Lists []listView `json:"lists"`
	}{Lists: []listView{}}
	for _, sp := range s.lists.Specs() {
		out.Lists = append(out.Lists, listView{Name: sp.Name, Kind: sp.Kind, Description: sp.Description, Items: counts[sp.Name]})
	}
	writeJSON(w, http.StatusOK, out)
}

type itemList struct {
	Items []lists.Item `json:"items"`
	Next  string       `json:"next_cursor,omitempty"`
}

func (s *Server) listItems(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "cursor", "limit")
	if !ok {
		return
	}
	limit, ok := limitParam(w, q, 100)
	if !ok {
		return
	}
	name, ok := pathParam(w, r, "name")
	if !ok {
		return
	}
	items, next, err := s.lists.Items(r.Context(), name, q.Get("cursor"), limit)
	if err != nil {
		s.storeError(w, err)
		return
	}
	if items == nil {
		items = []lists.Item{}
	}
	writeJSON(w, http.StatusOK, itemList{Items: items, Next: next})
}

func (s *Server) listChanges(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "limit")
	if !ok {
		return
	}
	limit, ok := limitParam(w, q, 100)
	if !ok {
		return
	}
	name, ok := pathParam(w, r, "name")
	if !ok {
		return
	}
	changes, err := s.lists.Changes(r.Context(), name, limit)
	if err != nil {
		s.storeError(w, err)
		return
	}
	if changes == nil {
		changes = []lists.Change{}
	}
	writeJSON(w, http.StatusOK, struct {
		Changes []lists.Change `json:"changes"`
	}{changes})
}

// item returns the list's name and the value of the path.
func item(w http.ResponseWriter, r *http.Request) (name, value string, ok bool) {
	if name, ok = pathParam(w, r, "name"); ok {
		value, ok = pathParam(w, r, "value")
	}
	return name, value, ok
}

func (s *Server) getItem(w http.ResponseWriter, r *http.Request) {
	name, value, ok := item(w, r)
	if !ok {
		return
	}
	it, err := s.lists.Get(r.Context(), name, value)
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, it)
}

type itemRequest struct {
	Note string `json:"note"`
}

// putItem adds a value to a list: 201 with the item, or 200 with the item as it was when the
// list had it already (its note unchanged). The store refuses a value or a note that holds a
// card number (422 invalid_value, invalid_note), without quoting it.
func (s *Server) putItem(w http.ResponseWriter, r *http.Request) {
	name, value, ok := item(w, r)
	if !ok {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req itemRequest
	if body = bytes.TrimSpace(body); len(body) > 0 {
		err := json.Unmarshal(body, &req, json.RejectUnknownMembers(true))
		if err == nil && body[0] != '{' {
			err = errors.New("not an object")
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_json", "the body must be empty or {\"note\": string}: "+err.Error())
			return
		}
	}
	analyst, _ := r.Context().Value(ctxKey{}).(string)
	it, created, err := s.lists.Put(r.Context(), name, value, analyst, req.Note)
	if err != nil {
		s.storeError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		// The value as stored: normalised, and never a card number (the store refuses them).
		s.log.Info("list changed", "list", it.List, "op", lists.OpAdd, "analyst", analyst, "value", it.Value)
		w.Header().Set("Location", "/v1/lists/"+url.PathEscape(it.List)+"/items/"+url.PathEscape(it.Value))
	}
	writeJSON(w, status, it)
}

func (s *Server) deleteItem(w http.ResponseWriter, r *http.Request) {
	name, value, ok := item(w, r)
	if !ok {
		return
	}
	analyst, _ := r.Context().Value(ctxKey{}).(string)
	it, err := s.lists.Delete(r.Context(), name, value, analyst)
	if err != nil {
		s.storeError(w, err)
		return
	}
	// The value as the list held it, as the audit trail has it: "::ffff:192.0.2.1" removes and
	// logs 192.0.2.1.
	s.log.Info("list changed", "list", it.List, "op", lists.OpRemove, "analyst", analyst, "value", it.Value)
	w.WriteHeader(http.StatusNoContent)
}
