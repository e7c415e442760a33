package contract

// Names Envoy, the control plane and the sidecars must agree on. Each is
// defined here once; every other package refers to these constants.
const (
	// ContextRoute is the ext_authz context extension naming the route
	// (ROUTE_SPEC.md); the control plane sets it per route, the authz
	// sidecar reads it.
	ContextRoute = "gatehouse.route"
	// ContextRevision is the ext_authz context extension carrying the
	// config version (the node group's xDS version) the control plane
	// compiled into the filter; the authz sidecar copies it into the
	// dynamic metadata as ConfigVersionKey.
	ContextRevision = "gatehouse.revision"

	// ExtAuthzFilter is the name of Envoy's ext_authz HTTP filter: the
	// control plane writes it into the HCM, the dev front door plays it.
	ExtAuthzFilter = "envoy.filters.http.ext_authz"
	// ExtAuthzNamespace is the dynamic-metadata namespace the authz sidecar
	// writes (subject, provider, kind, apikey_id, rule, decision, claims,
	// config_version) and Envoy attaches to ALS entries: the filter's name.
	ExtAuthzNamespace = ExtAuthzFilter
	// ConfigVersionKey is the field of the ext_authz metadata naming the
	// config version that served the request.
	ConfigVersionKey = "config_version"
	// ConfigVersionTag is the ALS custom tag (AccessLogCommon.custom_tags)
	// carrying the config version from the route's metadata, which the
	// control plane sets on every route and the accesslog sidecar reads
	// where the ext_authz metadata has none.
	ConfigVersionTag = "config_version"

	// ReservedHeaderPrefix starts every header only Gatehouse may set:
	// stripped from client requests on every route.
	ReservedHeaderPrefix = "x-gatehouse-"
	// ReasonHeader carries the reason of every authz denial.
	ReasonHeader = ReservedHeaderPrefix + "reason"
)

// Envoy cluster names of the sidecars and the control plane, shared by the
// xDS config and the bootstrap.
const (
	AuthzCluster     = "gatehouse_authz"
	RateLimitCluster = "gatehouse_ratelimit"
	AccessLogCluster = "gatehouse_accesslog"
	XDSCluster       = "gatehouse_xds"
)

// Default listen addresses of every role; flags override them.
const (
	DefaultBrokerAddr            = "127.0.0.1:8080"
	DefaultBrokerAdminAddr       = "127.0.0.1:8083"
	DefaultWorkerAdminAddr       = "127.0.0.1:8084"
	DefaultXDSAddr               = "127.0.0.1:18000"
	DefaultControlPlaneAdminAddr = "127.0.0.1:18001"
	DefaultAuthzAddr             = "127.0.0.1:9001"
	DefaultAuthzAdminAddr        = "127.0.0.1:9091"
	DefaultRateLimitAddr         = "127.0.0.1:8081" // envoyproxy/ratelimit's port
	DefaultRateLimitAdminAddr    = "127.0.0.1:6070"
	DefaultAccessLogAddr         = "127.0.0.1:9002"
	DefaultAccessLogHTTPAddr     = "127.0.0.1:9003"
	// DefaultEnvoyAdminAddr is the Envoy admin address of a fleet node:
	// loopback only, since it can stop and reconfigure Envoy.
	DefaultEnvoyAdminAddr = "127.0.0.1:9901"
	// DefaultEnvoyHTTPAddr and DefaultEnvoyHTTPSAddr are where a node's
	// Envoy listens for client traffic.
	DefaultEnvoyHTTPAddr  = "0.0.0.0:10080"
	DefaultEnvoyHTTPSAddr = "0.0.0.0:10443"
)
