package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// problem is one line of Load's error: the variable and what is wrong with it.
type problem struct {
	name string
	msg  string
}

// problems collects every problem of one Load, so that a user fixes all of
// them in one go instead of one per restart.
type problems struct {
	environ  map[string]string
	rejected map[string]bool // variables already reported, checked no further
	list     []problem
}

func newProblems(environ map[string]string) *problems {
	return &problems{environ: environ, rejected: make(map[string]bool)}
}

// add records a problem. The message must fit on one line: values are only
// ever echoed with %q, and never for URLs or secrets.
func (p *problems) add(name, format string, args ...any) {
	p.rejected[name] = true
	p.list = append(p.list, problem{name: name, msg: fmt.Sprintf(format, args...)})
}

// check records err for name, unless name was already reported: a value that
// did not parse is left zero and would otherwise fail its range check too.
func (p *problems) check(name string, err error) {
	if err == nil || p.rejected[name] {
		return
	}
	p.add(name, "%v", err)
}

// err joins the problems in the order the variables are declared, so the
// output is stable and reads like the Usage table.
func (p *problems) err() error {
	order := make(map[string]int)
	for i, v := range variables() {
		order[v.name] = i
	}
	slices.SortStableFunc(p.list, func(a, b problem) int {
		return cmp.Compare(order[a.name], order[b.name])
	})
	errs := make([]error, 0, len(p.list))
	for _, pr := range p.list {
		errs = append(errs, errors.New(pr.name+": "+pr.msg))
	}
	return errors.Join(errs...)
}

// addParseError translates caarlos0/env's errors, which name Go fields and
// quote raw values (a DSN included), into problems naming the variable.
func (p *problems) addParseError(err error) {
	if err == nil {
		return
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		agg.Errors = []error{err}
	}
	byField := make(map[string]string)
	for _, v := range variables() {
		byField[v.field] = v.name
	}
	for _, e := range agg.Errors {
		var (
			parse   env.ParseError
			noParse env.NoParserError
			notSet  env.VarIsNotSetError
			empty   env.EmptyVarError
		)
		switch {
		case errors.As(e, &parse):
			p.addValueError(byField[parse.Name], parse)
		case errors.As(e, &noParse):
			p.add(byField[noParse.Name], "no parser for type %s (a bug in authsidecar)", noParse.Type)
		case errors.As(e, &notSet):
			p.add(notSet.Key, "required but not set")
		case errors.As(e, &empty):
			p.add(empty.Key, "must not be empty")
		default:
			// The remaining types describe the struct, never a value.
			p.add("config", "%s", strings.ReplaceAll(e.Error(), "\n", " "))
		}
	}
}

// addValueError reports a value that caarlos0/env could not convert.
func (p *problems) addValueError(name string, parse env.ParseError) {
	var entries entryErrors
	if errors.As(parse.Err, &entries) {
		for _, msg := range entries {
			p.add(name, "%s", msg)
		}
		return
	}
	raw := p.environ[name]
	switch parse.Type {
	case reflect.TypeFor[time.Duration]():
		p.add(name, "%q is not a duration; use Go syntax such as 100ms, 10s or 5m", raw)
	case reflect.TypeFor[int]():
		p.add(name, "%q is not a whole number (or is too large)", raw)
	case reflect.TypeFor[bool]():
		p.add(name, "%q is not a boolean; use true or false", raw)
	case reflect.TypeFor[*url.URL]():
		if err := urlShape(raw, upstreamSchemes...); err != nil {
			p.add(name, "%v", err)
		} else {
			p.add(name, "not a valid URL: write it as http://host:port")
		}
	default:
		p.add(name, "invalid value")
	}
}

// entryErrors are the problems of a comma-separated list, one per bad entry.
// Its messages may quote the entries: they are only used for non-secret lists.
type entryErrors []string

func (e entryErrors) Error() string { return strings.Join(e, "; ") }
