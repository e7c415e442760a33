package api

import (
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/gatehouse-edge/gatehouse/broker/cdn"
	"github.com/gatehouse-edge/gatehouse/spec"
)

// Catalog identifiers. They never change: platforms store them.
const (
	ServiceID   = "3f9c1a52-7d0e-4b8a-9c61-2e5f0d7b4a10"
	ServiceName = "edge-route"
	PlanID      = "a7e4b2c9-1f36-4d85-8b0a-6c3d9e2f5b71"
	PlanName    = "standard"
)

type catalogBody struct {
	Services []service `json:"services"`
}

type service struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	Description          string         `json:"description"`
	Bindable             bool           `json:"bindable"`
	InstancesRetrievable bool           `json:"instances_retrievable"`
	BindingsRetrievable  bool           `json:"bindings_retrievable"`
	PlanUpdateable       bool           `json:"plan_updateable"`
	Tags                 []string       `json:"tags"`
	Metadata             map[string]any `json:"metadata"`
	Plans                []plan         `json:"plans"`
}

type plan struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Free        bool           `json:"free"`
	Bindable    bool           `json:"bindable"`
	Schemas     map[string]any `json:"schemas"`
}

var (
	catalogOnce sync.Once
	catalogData catalogBody
)

// Catalog is the OSB catalog this broker serves.
func Catalog() any {
	catalogOnce.Do(func() {
		routeSchema := EdgeRouteSchema()
		bindSchema := map[string]any{
			"$schema":              "http://json-schema.org/draft-04/schema#",
			"type":                 "object",
			"additionalProperties": false,
			"properties": map[string]any{
				"provider": map[string]any{"type": "string", "description": "name of an apiKeys provider of the EdgeRoute (optional when it has only one)"},
				"labels": map[string]any{"type": "object", "maxProperties": spec.MaxLabels,
					"description":          "key labels (authorization claims); only those the apiKeys provider's bindLabels allow",
					"additionalProperties": map[string]any{"type": "string", "maxLength": spec.MaxLabelBytes, "pattern": "^[A-Za-z0-9_.:@/+=-]*$"}},
			},
		}
		schemas := map[string]any{
			"service_instance": map[string]any{
				"create": map[string]any{"parameters": routeSchema},
				"update": map[string]any{"parameters": routeSchema},
			},
			"service_binding": map[string]any{
				"create": map[string]any{"parameters": bindSchema},
			},
		}
		catalogData = catalogBody{Services: []service{{
			ID: ServiceID, Name: ServiceName,
			Description:          "An Envoy edge route with auth, rate-limit and access-log policy (Gatehouse EdgeRoute v1); bindings issue API keys.",
			Bindable:             true,
			InstancesRetrievable: true,
			BindingsRetrievable:  true,
			PlanUpdateable:       false,
			Tags:                 []string{"gatehouse", "envoy", "edge"},
			Metadata:             map[string]any{"displayName": "Gatehouse edge route"},
			Plans: []plan{{
				ID: PlanID, Name: PlanName, Description: "One EdgeRoute, served by the shared Envoy fleet.",
				Free: true, Bindable: true, Schemas: schemas,
			}, {
				ID: cdn.PlanID, Name: cdn.PlanName, Description: "One EdgeRoute behind its own CloudFront distribution (CDN front) in front of the shared Envoy fleet.",
				Free: true, Bindable: true, Schemas: schemas,
			}},
		}}}
	})
	return catalogData
}

func (a *API) catalog(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, Catalog())
}

// EdgeRouteSchema is the JSON schema (draft-04, as OSB requires) of an
// EdgeRoute, derived from the spec package's Go types so it cannot drift:
// every object is closed (additionalProperties false, as the spec loader
// is strict) and fields without omitempty are required.
func EdgeRouteSchema() map[string]any {
	s := schemaOf(reflect.TypeOf(spec.EdgeRoute{}), map[reflect.Type]bool{})
	s["$schema"] = "http://json-schema.org/draft-04/schema#"
	s["title"] = "Gatehouse EdgeRoute v1"
	return s
}

var durationType = reflect.TypeOf(spec.Duration{})

func schemaOf(t reflect.Type, seen map[reflect.Type]bool) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == durationType {
		return map[string]any{"type": "string", "description": "Go duration, e.g. 2s, 1m30s"}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), seen)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), seen)}
	case reflect.Struct:
		if seen[t] {
			return map[string]any{"type": "object"}
		}
		seen[t] = true
		defer delete(seen, t)
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = schemaOf(f.Type, seen)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				required = append(required, name)
			}
		}
		out := map[string]any{"type": "object", "additionalProperties": false, "properties": props}
		if len(required) > 0 {
			out["required"] = required
		}
		return out
	}
	return map[string]any{}
}
