package pgsession

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LookupPlan is how Postgres would run the session lookup, as `authsidecar check` reports it.
type LookupPlan struct {
	// TokenIndex is the unique single-column index on user_sessions.token_hash; "" if
	// the schema has none.
	TokenIndex string
	// Scan is the plan node that reads user_sessions, e.g. "Index Scan" or "Seq Scan".
	Scan string
	// ScanIndex is the index that node reads through; "" for a sequential scan.
	ScanIndex string
}

// UsesTokenIndex reports whether the lookup reads user_sessions through the token-hash index.
func (p LookupPlan) UsesTokenIndex() bool {
	return p.TokenIndex != "" && p.ScanIndex == p.TokenIndex
}

// tokenIndexSQL finds the unique index on token_hash alone, whatever the app named it.
const tokenIndexSQL = `SELECT i.relname FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = x.indkey[0]
WHERE x.indrelid = 'platform.user_sessions'::regclass
  AND x.indisunique AND x.indnatts = 1 AND a.attname = 'token_hash'
ORDER BY i.relname LIMIT 1`

// ExplainLookup explains the exact query Lookup runs (with a hash that matches nothing)
// and reports which index the plan reads user_sessions through. Sequential and bitmap scans
// are disabled for the EXPLAIN: on a small table a sequential scan is cheaper and would hide
// whether the query can use the index at all, which is what matters once the table grows.
func (s *Store) ExplainLookup(ctx context.Context) (LookupPlan, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var p LookupPlan
	err := s.pool.QueryRow(ctx, tokenIndexSQL).Scan(&p.TokenIndex)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("find token_hash index: %w", err)
	}
	raw, err := s.explain(ctx)
	if err != nil {
		return p, fmt.Errorf("explain lookup: %w", err)
	}
	var plans []struct {
		Plan planNode `json:"Plan"`
	}
	if err := json.Unmarshal(raw, &plans); err != nil || len(plans) == 0 {
		return p, errors.New("explain lookup: unexpected plan format")
	}
	if n := plans[0].Plan.find("user_sessions"); n != nil {
		p.Scan, p.ScanIndex = n.NodeType, n.IndexName
	}
	return p, nil
}

// planNode is the part of EXPLAIN (FORMAT JSON) output the check reads.
type planNode struct {
	NodeType     string     `json:"Node Type"`
	RelationName string     `json:"Relation Name"`
	IndexName    string     `json:"Index Name"`
	Plans        []planNode `json:"Plans"`
}

// find returns the node that reads relation: the scan node itself, or for a bitmap heap
// scan the bitmap index scan beneath it, which names the index.
func (n *planNode) find(relation string) *planNode {
	if n.RelationName == relation {
		if n.IndexName == "" && len(n.Plans) > 0 && n.Plans[0].IndexName != "" {
			return &planNode{NodeType: n.NodeType, RelationName: relation, IndexName: n.Plans[0].IndexName}
		}
		return n
	}
	for i := range n.Plans {
		if m := n.Plans[i].find(relation); m != nil {
			return m
		}
	}
	return nil
}

// explain runs the EXPLAIN in a read-only transaction, so SET LOCAL ends with it.
func (s *Store) explain(ctx context.Context) ([]byte, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // read-only: nothing to keep
	if _, err := tx.Exec(ctx, "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off"); err != nil {
		return nil, err
	}
	var raw []byte
	err = tx.QueryRow(ctx, "EXPLAIN (FORMAT JSON) "+lookupSQL, strings.Repeat("0", 64)).Scan(&raw)
	return raw, err
}
