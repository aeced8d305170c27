package pgsession

// The embedded SQL, for the tests that check what is shipped.
func SchemaSQL() string { return schemaSQL }
func NotifySQL() string { return notifySQL }
func RoleSQL() string   { return roleSQL }
