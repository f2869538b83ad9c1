package rules

import (
	"fmt"
	"slices"
	"strings"
)

// Error is one problem of a rules file.
type Error struct {
	Rule string // the rule's id, "#N" for the Nth rule when it has no valid id, "" for the file
	Line int    // 1-based line of the problem in the file
	Msg  string
}

// Errors lists every problem of a rules file. Compile returns it.
type Errors struct {
	File string
	List []Error
}

// Error prints one line per problem: FILE:LINE: rule ID: MESSAGE.
func (e *Errors) Error() string {
	var b strings.Builder
	for i, p := range e.List {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%s:%d: ", e.File, p.Line)
		if p.Rule != "" {
			fmt.Fprintf(&b, "rule %s: ", p.Rule)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// add records a problem.
func (e *Errors) add(rule string, line int, format string, args ...any) {
	e.List = append(e.List, Error{Rule: rule, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err is e sorted by line, or nil when there is no problem.
func (e *Errors) err() error {
	if len(e.List) == 0 {
		return nil
	}
	slices.SortStableFunc(e.List, func(a, b Error) int { return a.Line - b.Line })
	return e
}
