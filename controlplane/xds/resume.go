package xds

import (
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
)

// Replicas: every control plane over the same store compiles the same
// content into the same snapshot version (a content hash), so a node that
// reconnects, to this replica or another one, and presents the version it
// holds already has that version's resources. go-control-plane starts a
// new stream's SotW subscription with nothing returned, which would make
// the cache send the whole version again; resumeSotW tells the cache what
// the node holds instead. Delta needs nothing of this: the node lists the
// versions of its resources (initial_resource_versions), and the resource
// versions are content hashes too.

// resumed is a subscription of a node that presented the current version
// on a stream that has been sent nothing of this type yet.
type resumed struct {
	cachev3.Subscription
	held map[string]string
}

// ReturnedResources is every resource of the current version.
func (r resumed) ReturnedResources() map[string]string { return r.held }

// resumeSotW returns sub, or, when req is a node's first request for a
// type on a new stream and names the version the group is served now,
// sub as if that version had been sent on this stream. A node that
// subscribes on the new stream to a name it had not been sent (it asked
// for it just before the old stream broke) is not sent that resource
// until the next version; the xDS protocol allows this for wildcard
// types, and Gatehouse's named types (the one route table, EDS per
// cluster of the same version) follow from the wildcard ones.
func (c *nackCache) resumeSotW(req *cachev3.Request, sub cachev3.Subscription) cachev3.Subscription {
	v := req.GetVersionInfo()
	if v == "" || req.GetErrorDetail() != nil || len(sub.ReturnedResources()) > 0 {
		return sub
	}
	if c.t.hasSent(req.GetNode().GetId(), req.GetTypeUrl()) {
		return sub // this node's live stream had answers: the subscription knows
	}
	held, err := c.watchCache.held(GroupHash{}.ID(req.GetNode()), req.GetTypeUrl(), v)
	if err != nil || held == nil {
		return sub
	}
	c.t.metrics.resumed.WithLabelValues(typeLabel(req.GetTypeUrl())).Inc()
	return resumed{Subscription: sub, held: held}
}

// hasSent reports whether a response of typeURL went to the node on one of
// its live streams.
func (t *tracker) hasSent(node, typeURL string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return lastSent(t.sent[node], typeURL) != nil
}
