package accesslogsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/gatehouse-edge/gatehouse/accesslog/chstore"
)

// openClickHouse parses clickhouse://[user@]HOST:PORT/DB[?password_file=F]
// (the password comes from a file, never from the URL or the command line).
func openClickHouse(ctx context.Context, raw string, log *slog.Logger) (*chstore.Store, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--store %s: want clickhouse://HOST:PORT/DB", redactStoreURL(raw))
	}
	if _, set := u.User.Password(); set {
		return nil, fmt.Errorf("--store %s: put the password in a file and pass ?password_file=PATH", redactStoreURL(raw))
	}
	db := strings.Trim(u.Path, "/")
	if db == "" {
		db = "gatehouse"
	}
	cfg := chstore.Config{Addr: u.Host, Database: db, Username: u.User.Username(), Log: log}
	if pf := u.Query().Get("password_file"); pf != "" {
		b, err := readSecretFile(pf, "clickhouse password file", log)
		if err != nil {
			return nil, err
		}
		cfg.Password = strings.TrimSpace(string(b))
	}
	return chstore.Open(ctx, cfg)
}
