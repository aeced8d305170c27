package pgsession

import (
	"context"
	"fmt"
	"regexp"
)

// Deployment is what `authsidecar check` needs to know about how the database was
// prepared for the connected role: the schema, the role's privileges, row-level security
// and the change-notification triggers. Inspect reads it from the system catalogs, which
// every role may read, so it works whatever the role lacks.
type Deployment struct {
	// Role is the connected role (current_user); Superuser and BypassRLS are its attributes.
	Role                 string
	Superuser, BypassRLS bool
	// Schema reports whether schema platform exists, SchemaUsage whether Role may use it.
	Schema, SchemaUsage bool
	// Tables are platform.users and platform.user_sessions, those that exist.
	Tables []Table
	// Triggers are the row triggers on those tables.
	Triggers []Trigger
}

// Table is one of the session tables as Role sees it.
type Table struct {
	Name string // "users" or "user_sessions"
	// Owner reports whether Role has the owner's privileges (the owner bypasses row-level
	// security unless it is forced); Select whether Role may SELECT.
	Owner, Select bool
	// RowSecurity and ForceRowSecurity are the table's RLS switches.
	RowSecurity, ForceRowSecurity bool
	// Policies names the permissive SELECT policies that apply to Role.
	Policies []string
}

// Trigger is a row trigger on a session table and the channels its function notifies.
type Trigger struct {
	Name, Table, Function string
	// Enabled is false for a trigger disabled, or enabled for replicas only.
	Enabled bool
	// OnUpdate and OnDelete are the events it fires on.
	OnUpdate, OnDelete bool
	// Channels are the literal channel names its function passes to pg_notify.
	Channels []string
}

const currentRoleSQL = `SELECT current_user, r.rolsuper, r.rolbypassrls,
  n.oid IS NOT NULL, coalesce(has_schema_privilege(n.oid, 'USAGE'), false)
FROM pg_roles r LEFT JOIN pg_namespace n ON n.nspname = 'platform'
WHERE r.rolname = current_user`

// tablesSQL reads privileges by oid: a name would need USAGE on the schema to resolve.
// pg_has_role(owner, 'USAGE') is true for the owner and the roles that inherit its
// privileges, which row-level security treats as the owner.
const tablesSQL = `SELECT c.relname, pg_has_role(c.relowner, 'USAGE'), has_table_privilege(c.oid, 'SELECT'),
  c.relrowsecurity, c.relforcerowsecurity,
  coalesce(array_agg(p.polname ORDER BY p.polname) FILTER (WHERE p.polname IS NOT NULL), '{}')
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'platform'
LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polpermissive AND p.polcmd IN ('r', '*')
  AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) AS r(oid) WHERE pg_has_role(r.oid, 'USAGE')))
WHERE c.relname IN ('users', 'user_sessions') AND c.relkind IN ('r', 'p')
GROUP BY c.oid ORDER BY c.relname`

// triggersSQL decodes tgtype: bit 0 FOR EACH ROW, bit 3 DELETE, bit 4 UPDATE.
const triggersSQL = `SELECT t.tgname, c.relname, p.proname, t.tgenabled IN ('O', 'A'),
  t.tgtype & 16 <> 0, t.tgtype & 8 <> 0, coalesce(p.prosrc, '')
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'platform'
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE c.relname IN ('users', 'user_sessions') AND NOT t.tgisinternal AND t.tgtype & 1 = 1
ORDER BY c.relname, t.tgname`

// notifyCall finds the channel literal of each pg_notify call in a function's source.
var notifyCall = regexp.MustCompile(`(?i)pg_notify\s*\(\s*'([^']*)'`)

// Inspect reads how the database is prepared for the connected role.
func (s *Store) Inspect(ctx context.Context) (Deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d Deployment
	err := s.pool.QueryRow(ctx, currentRoleSQL).Scan(&d.Role, &d.Superuser, &d.BypassRLS, &d.Schema, &d.SchemaUsage)
	if err != nil {
		return d, fmt.Errorf("inspect role: %w", err)
	}
	rows, err := s.pool.Query(ctx, tablesSQL)
	if err != nil {
		return d, fmt.Errorf("inspect tables: %w", err)
	}
	for rows.Next() {
		var t Table
		if err := rows.Scan(&t.Name, &t.Owner, &t.Select, &t.RowSecurity, &t.ForceRowSecurity, &t.Policies); err != nil {
			rows.Close()
			return d, fmt.Errorf("inspect tables: %w", err)
		}
		d.Tables = append(d.Tables, t)
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("inspect tables: %w", err)
	}
	if d.Triggers, err = s.triggers(ctx); err != nil {
		return d, fmt.Errorf("inspect triggers: %w", err)
	}
	return d, nil
}

func (s *Store) triggers(ctx context.Context) ([]Trigger, error) {
	rows, err := s.pool.Query(ctx, triggersSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Trigger
	for rows.Next() {
		var (
			t   Trigger
			src string
		)
		if err := rows.Scan(&t.Name, &t.Table, &t.Function, &t.Enabled, &t.OnUpdate, &t.OnDelete, &src); err != nil {
			return nil, err
		}
		for _, m := range notifyCall.FindAllStringSubmatch(src, -1) {
			t.Channels = append(t.Channels, m[1])
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
