package dev

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gatehouse-edge/gatehouse/frontdoor"
	"github.com/gatehouse-edge/gatehouse/internal/telemetry"
)

// frontDoorNodeID is the node id the front door's xDS client presents.
const frontDoorNodeID = "dev-frontdoor"

// devFrontDoor is the running front door of a dev suite.
type devFrontDoor struct {
	node *frontdoor.Node
	door *frontdoor.Door
}

// startFrontDoor binds c.FrontDoorAddr and serves the front door there
// in g: a node of c.NodeGroup on the control plane's xDS and a Door on
// what it holds. Like an Envoy of the group, it dials xDS and the
// sidecars with mutual TLS: pki's Envoy certificate, trusting pki's CA.
// It returns nil when the front door is off.
func startFrontDoor(ctx context.Context, c Config, pki *PKI, g *errgroup.Group) (*devFrontDoor, error) {
	if c.FrontDoorAddr == "" {
		return nil, nil
	}
	dial, err := pki.Envoy().GRPCDialOptions("envoy")
	if err != nil {
		return nil, fmt.Errorf("dev: front door: %w", err)
	}
	if len(dial) == 0 {
		return nil, errors.New("dev: front door: no client TLS (the dev PKI names no certificate)")
	}
	l, err := net.Listen("tcp", c.FrontDoorAddr)
	if err != nil {
		return nil, fmt.Errorf("dev: front door: %w", err)
	}
	node, err := frontdoor.StartNode(ctx, c.XDSAddr, frontDoorNodeID, c.NodeGroup, dial...)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("dev: front door: %w", err)
	}
	door, err := frontdoor.New(node, frontdoor.Options{Dial: dial, MinSidecarTimeout: 2 * time.Second, Log: c.Log.With("component", "frontdoor")})
	if err != nil {
		l.Close()
		node.Close()
		return nil, fmt.Errorf("dev: front door: %w", err)
	}
	g.Go(func() error {
		defer node.Close()
		defer door.Close()
		return telemetry.ServeHTTP(ctx, l, door)
	})
	return &devFrontDoor{node: node, door: door}, nil
}

// waitConfig waits, at most within, until the front door holds a
// listener and its route table, so the banner's curl lines work at once.
func (f *devFrontDoor) waitConfig(ctx context.Context, within time.Duration) {
	f.node.WaitFor(ctx, within, func(cfg frontdoor.NodeConfig) bool {
		l := cfg.Listeners[frontdoor.DefaultListener]
		if l == nil {
			return false
		}
		h, err := frontdoor.HCMOf(l)
		if err != nil {
			return false
		}
		if h.GetScopedRoutes() != nil { // every scope's table
			for _, sc := range cfg.Scopes {
				if cfg.Routes[sc.GetRouteConfigurationName()] == nil {
					return false
				}
			}
			return len(cfg.Scopes) > 0
		}
		return cfg.Routes[h.GetRds().GetRouteConfigName()] != nil
	})
}
