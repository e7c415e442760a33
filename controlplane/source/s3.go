package source

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3 is a prefix of an S3 bucket holding spec files, polled with ETags:
// each poll lists the prefix and downloads only objects whose ETag changed.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string
	poll   time.Duration
	log    *slog.Logger

	objects   map[string]s3Object // key → last downloaded version
	downloads int                 // objects fetched so far (tests check the ETag reuse)
}

type s3Object struct {
	etag string
	data []byte
}

// NewS3 parses ref ("s3://bucket/prefix") and builds the client. With
// Options.S3Endpoint set, path-style addressing is used (s3rver, MinIO).
func NewS3(ctx context.Context, ref string, o Options) (*S3, error) {
	u, err := url.Parse(ref)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("s3 source %q: want s3://bucket/prefix", ref)
	}
	var loadOpts []func(*config.LoadOptions) error
	if o.S3Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(o.S3Region))
	}
	if o.S3AccessKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(o.S3AccessKey, o.S3SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 source %s: loading AWS config: %w", ref, err)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.S3Endpoint != "" {
			so.BaseEndpoint = aws.String(o.S3Endpoint)
			so.UsePathStyle = true
		}
	})
	poll := o.PollInterval
	if poll <= 0 {
		poll = 5 * time.Second
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	return &S3{
		client:  client,
		bucket:  u.Host,
		prefix:  prefix,
		poll:    poll,
		log:     o.log().With("component", "source", "source", ref),
		objects: map[string]s3Object{},
	}, nil
}

// Read lists the prefix and returns the current revision, downloading
// only changed objects. It is not safe for concurrent use.
func (s *S3) Read(ctx context.Context) (Revision, error) {
	seen := map[string]bool{}
	var specs []Spec
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return Revision{}, fmt.Errorf("s3 source: listing s3://%s/%s: %w", s.bucket, s.prefix, err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			if !isSpecFile(path.Base(key)) {
				continue
			}
			if len(seen) >= maxFiles {
				return Revision{}, fmt.Errorf("s3 source: more than %d spec objects under s3://%s/%s", maxFiles, s.bucket, s.prefix)
			}
			if aws.ToInt64(obj.Size) > maxSpecBytes {
				return Revision{}, fmt.Errorf("s3 source: s3://%s/%s is %d bytes, over %d", s.bucket, key, aws.ToInt64(obj.Size), maxSpecBytes)
			}
			seen[key] = true
			etag := aws.ToString(obj.ETag)
			cached, ok := s.objects[key]
			if !ok || cached.etag != etag {
				data, gotETag, err := s.get(ctx, key)
				if err != nil {
					return Revision{}, err
				}
				cached = s3Object{etag: gotETag, data: data}
				s.objects[key] = cached
			}
			specs = append(specs, Spec{Origin: "s3://" + s.bucket + "/" + key, Data: cached.data})
		}
	}
	for k := range s.objects {
		if !seen[k] {
			delete(s.objects, k)
		}
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Origin < specs[j].Origin })
	return Revision{ID: RevisionID(specs), Specs: specs}, nil
}

func (s *S3) get(ctx context.Context, key string) ([]byte, string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", fmt.Errorf("s3 source: getting s3://%s/%s: %w", s.bucket, key, err)
	}
	defer out.Body.Close()
	s.downloads++
	data, err := io.ReadAll(io.LimitReader(out.Body, maxSpecBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("s3 source: reading s3://%s/%s: %w", s.bucket, key, err)
	}
	if len(data) > maxSpecBytes {
		return nil, "", fmt.Errorf("s3 source: s3://%s/%s is over %d bytes", s.bucket, key, maxSpecBytes)
	}
	return data, aws.ToString(out.ETag), nil
}

// Watch implements Source: poll every PollInterval, deliver on change. A
// failed poll keeps the last revision.
func (s *S3) Watch(ctx context.Context, fn func(Revision)) error {
	last := ""
	t := time.NewTicker(s.poll)
	defer t.Stop()
	for {
		rev, err := s.Read(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("polling failed; keeping the last revision", "error", err)
		case rev.ID != last:
			last = rev.ID
			s.log.Info("new revision", "revision", rev.ID, "objects", len(rev.Specs))
			fn(rev)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
