package cdn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront"
	"github.com/aws/aws-sdk-go-v2/service/cloudfront/types"
)

// CloudFrontAPI is the part of the CloudFront client the step uses.
type CloudFrontAPI interface {
	ListDistributions(ctx context.Context, in *cloudfront.ListDistributionsInput, opts ...func(*cloudfront.Options)) (*cloudfront.ListDistributionsOutput, error)
	GetDistribution(ctx context.Context, in *cloudfront.GetDistributionInput, opts ...func(*cloudfront.Options)) (*cloudfront.GetDistributionOutput, error)
	CreateDistribution(ctx context.Context, in *cloudfront.CreateDistributionInput, opts ...func(*cloudfront.Options)) (*cloudfront.CreateDistributionOutput, error)
	UpdateDistribution(ctx context.Context, in *cloudfront.UpdateDistributionInput, opts ...func(*cloudfront.Options)) (*cloudfront.UpdateDistributionOutput, error)
	DeleteDistribution(ctx context.Context, in *cloudfront.DeleteDistributionInput, opts ...func(*cloudfront.Options)) (*cloudfront.DeleteDistributionOutput, error)
}

// Managed CloudFront policies: no caching (the edge fleet decides), every
// viewer header, cookie and query string forwarded to the origin.
const (
	cachingDisabledPolicy = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
	allViewerPolicy       = "216adef6-5c7f-47e4-b989-5492eafa07d3"
	originID              = "gatehouse-fleet"
)

// CloudFront manages owned distributions.
type CloudFront struct {
	Client CloudFrontAPI
	// Origin is the fleet's load balancer name (HTTPS to it).
	Origin string
	// CertificateARN is the ACM certificate (us-east-1) covering the
	// aliases (gatehouse worker requires it); empty: CloudFront's default
	// certificate, with which CloudFront refuses aliases (tests only).
	CertificateARN string
	// Poll is how often Remove looks whether the disabled distribution is
	// deployed (default 15s).
	Poll time.Duration
	Log  *slog.Logger
}

// dist is an owned distribution as read.
type dist struct {
	id, etag, domain, status string
	cfg                      *types.DistributionConfig
}

// find returns owner's distribution (nil if none): a comment with the
// marker, confirmed by the immutable caller reference.
func (c *CloudFront) find(ctx context.Context, o Owner) (*dist, []types.DistributionSummary, error) {
	var all []types.DistributionSummary
	in := &cloudfront.ListDistributionsInput{}
	for range 1000 {
		out, err := c.Client.ListDistributions(ctx, in)
		if err != nil {
			return nil, nil, fmt.Errorf("cloudfront: listing distributions: %w", err)
		}
		if out.DistributionList == nil {
			break
		}
		all = append(all, out.DistributionList.Items...)
		if !aws.ToBool(out.DistributionList.IsTruncated) {
			break
		}
		in.Marker = out.DistributionList.NextMarker
	}
	for _, s := range all {
		if aws.ToString(s.Comment) != o.Marker() {
			continue
		}
		d, err := c.get(ctx, aws.ToString(s.Id))
		if err != nil {
			return nil, nil, err
		}
		if aws.ToString(d.cfg.CallerReference) == o.Marker() {
			return d, all, nil
		}
	}
	return nil, all, nil
}

func (c *CloudFront) get(ctx context.Context, id string) (*dist, error) {
	out, err := c.Client.GetDistribution(ctx, &cloudfront.GetDistributionInput{Id: aws.String(id)})
	if err != nil {
		return nil, fmt.Errorf("cloudfront: reading distribution %s: %w", id, err)
	}
	d := out.Distribution
	if d == nil || d.DistributionConfig == nil {
		return nil, fmt.Errorf("cloudfront: distribution %s: empty answer", id)
	}
	return &dist{id: id, etag: aws.ToString(out.ETag), domain: aws.ToString(d.DomainName), status: aws.ToString(d.Status), cfg: d.DistributionConfig}, nil
}

// foreign reports hosts that are aliases of distributions other than
// mine.
func foreign(all []types.DistributionSummary, mine *dist, hosts []string) error {
	var errs []error
	for _, h := range sortedLower(hosts) {
		for _, s := range all {
			if mine != nil && aws.ToString(s.Id) == mine.id || s.Aliases == nil {
				continue
			}
			for _, a := range s.Aliases.Items {
				if strings.EqualFold(a, h) {
					errs = append(errs, &NotOwnedError{Host: h, Reason: fmt.Sprintf("it is an alias of CloudFront distribution %s", aws.ToString(s.Id))})
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Check reports hosts that belong to somebody else's distribution.
func (c *CloudFront) Check(ctx context.Context, o Owner, hosts []string) error {
	mine, all, err := c.find(ctx, o)
	if err != nil {
		return err
	}
	return foreign(all, mine, hosts)
}

func (c *CloudFront) config(o Owner, hosts []string) *types.DistributionConfig {
	aliases := sortedLower(hosts)
	cfg := &types.DistributionConfig{
		CallerReference: aws.String(o.Marker()),
		Comment:         aws.String(o.Marker()),
		Enabled:         aws.Bool(true),
		Aliases:         &types.Aliases{Quantity: aws.Int32(int32(len(aliases))), Items: aliases},
		Origins: &types.Origins{Quantity: aws.Int32(1), Items: []types.Origin{{
			Id: aws.String(originID), DomainName: aws.String(c.Origin),
			CustomOriginConfig: &types.CustomOriginConfig{HTTPPort: aws.Int32(80), HTTPSPort: aws.Int32(443),
				OriginProtocolPolicy: types.OriginProtocolPolicyHttpsOnly},
		}}},
		DefaultCacheBehavior: &types.DefaultCacheBehavior{
			TargetOriginId:        aws.String(originID),
			ViewerProtocolPolicy:  types.ViewerProtocolPolicyRedirectToHttps,
			CachePolicyId:         aws.String(cachingDisabledPolicy),
			OriginRequestPolicyId: aws.String(allViewerPolicy),
			AllowedMethods: &types.AllowedMethods{Quantity: aws.Int32(7), Items: []types.Method{"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"},
				CachedMethods: &types.CachedMethods{Quantity: aws.Int32(2), Items: []types.Method{"GET", "HEAD"}}},
		},
		HttpVersion: types.HttpVersionHttp2and3,
	}
	if c.CertificateARN != "" {
		cfg.ViewerCertificate = &types.ViewerCertificate{ACMCertificateArn: aws.String(c.CertificateARN),
			SSLSupportMethod: types.SSLSupportMethodSniOnly, MinimumProtocolVersion: types.MinimumProtocolVersionTLSv122021}
	} else {
		cfg.ViewerCertificate = &types.ViewerCertificate{CloudFrontDefaultCertificate: aws.Bool(true)}
	}
	return cfg
}

// matches reports whether cfg already serves hosts from the origin.
func (c *CloudFront) matches(cfg *types.DistributionConfig, hosts []string) bool {
	var have []string
	if cfg.Aliases != nil {
		have = sortedLower(cfg.Aliases.Items)
	}
	origin := ""
	if cfg.Origins != nil && len(cfg.Origins.Items) == 1 {
		origin = aws.ToString(cfg.Origins.Items[0].DomainName)
	}
	return aws.ToBool(cfg.Enabled) && slices.Equal(have, sortedLower(hosts)) && origin == c.Origin
}

// isNotOwned maps CloudFront's CNAMEAlreadyExists to ErrNotOwned.
func isNotOwned(err error, hosts []string) error {
	var ce *types.CNAMEAlreadyExists
	if errors.As(err, &ce) {
		return &NotOwnedError{Host: strings.Join(sortedLower(hosts), ","), Reason: "CloudFront says an alias already belongs to another distribution"}
	}
	return err
}

// Ensure creates or updates owner's distribution.
func (c *CloudFront) Ensure(ctx context.Context, o Owner, hosts []string) (string, error) {
	for range 3 {
		mine, all, err := c.find(ctx, o)
		if err != nil {
			return "", err
		}
		if err := foreign(all, mine, hosts); err != nil {
			return "", err
		}
		if mine == nil {
			out, err := c.Client.CreateDistribution(ctx, &cloudfront.CreateDistributionInput{DistributionConfig: c.config(o, hosts)})
			var exists *types.DistributionAlreadyExists
			if errors.As(err, &exists) {
				continue // created by an earlier attempt: find it again
			}
			if err != nil {
				return "", fmt.Errorf("cloudfront: creating the distribution of %s: %w", o.Instance, isNotOwned(err, hosts))
			}
			c.logf("cdn distribution created", "instance", o.Instance, "distribution", aws.ToString(out.Distribution.Id))
			return aws.ToString(out.Distribution.DomainName), nil
		}
		if c.matches(mine.cfg, hosts) {
			return mine.domain, nil
		}
		cfg := c.config(o, hosts)
		_, err = c.Client.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(mine.id), IfMatch: aws.String(mine.etag), DistributionConfig: cfg})
		var stale *types.PreconditionFailed
		if errors.As(err, &stale) {
			continue // changed since read: read again
		}
		if err != nil {
			return "", fmt.Errorf("cloudfront: updating distribution %s: %w", mine.id, isNotOwned(err, hosts))
		}
		c.logf("cdn distribution updated", "instance", o.Instance, "distribution", mine.id, "aliases", strings.Join(sortedLower(hosts), ","))
		return mine.domain, nil
	}
	return "", fmt.Errorf("cloudfront: the distribution of %s kept changing while it was updated", o.Instance)
}

// Remove disables, waits for deployment, then deletes.
func (c *CloudFront) Remove(ctx context.Context, o Owner) error {
	poll := c.Poll
	if poll <= 0 {
		poll = 15 * time.Second
	}
	for {
		mine, _, err := c.find(ctx, o)
		if err != nil || mine == nil {
			return err
		}
		switch {
		case aws.ToBool(mine.cfg.Enabled):
			cfg := *mine.cfg
			cfg.Enabled = aws.Bool(false)
			_, err = c.Client.UpdateDistribution(ctx, &cloudfront.UpdateDistributionInput{Id: aws.String(mine.id), IfMatch: aws.String(mine.etag), DistributionConfig: &cfg})
			if err == nil {
				c.logf("cdn distribution disabled; deleting it once deployed", "instance", o.Instance, "distribution", mine.id)
			}
		case mine.status == "Deployed":
			_, err = c.Client.DeleteDistribution(ctx, &cloudfront.DeleteDistributionInput{Id: aws.String(mine.id), IfMatch: aws.String(mine.etag)})
			if err == nil {
				c.logf("cdn distribution deleted", "instance", o.Instance, "distribution", mine.id)
				return nil
			}
		}
		var stale *types.PreconditionFailed
		var notDisabled *types.DistributionNotDisabled
		if err != nil && !errors.As(err, &stale) && !errors.As(err, &notDisabled) {
			return fmt.Errorf("cloudfront: removing distribution %s: %w", mine.id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cloudfront: distribution %s not deleted yet (status %s): %w", mine.id, mine.status, ctx.Err())
		case <-time.After(poll):
		}
	}
}

func (c *CloudFront) logf(msg string, args ...any) {
	if c.Log != nil {
		c.Log.Info(msg, args...)
	}
}
