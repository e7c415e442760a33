package accesslogsidecar

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse-edge/gatehouse/accesslog"
	"github.com/gatehouse-edge/gatehouse/accesslog/archive"
)

type archiver struct{ a *archive.Archiver }

// newArchiver builds the S3 client from the standard AWS configuration
// (environment, shared files, instance role); with ArchiveEndpoint set it
// uses that endpoint with path-style addressing.
func newArchiver(ctx context.Context, cfg Config, store accesslog.Store, spoolDir string, log *slog.Logger, reg prometheus.Registerer) (*archiver, error) {
	bucket, prefix, err := archive.ParseURL(cfg.Archive)
	if err != nil {
		return nil, fmt.Errorf("accesslog: --archive: %w", err)
	}
	opts := []func(*awsconfig.LoadOptions) error{}
	if cfg.ArchiveRegion != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.ArchiveRegion))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("accesslog: AWS configuration for the archive: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.ArchiveEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.ArchiveEndpoint)
			o.UsePathStyle = true
		}
	})
	node := cfg.NodeID
	if node == "" {
		node, _ = os.Hostname()
	}
	a, err := archive.New(archive.Config{
		Client: client, Bucket: bucket, Prefix: prefix, Store: store, Node: node,
		StateFile: filepath.Join(spoolDir, "archive.state"), Log: log, Registry: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return &archiver{a: a}, nil
}

func (a *archiver) run(ctx context.Context) error { return a.a.Run(ctx, 5*time.Minute) }
