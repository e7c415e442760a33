#!/usr/bin/env python3
"""PUT -> last_operation succeeded latency against a running `gatehouse dev`
(the real worker and control plane): provisions N new EdgeRoutes one after
another, polling every 5 ms, and prints p50 and max.

  bin/gatehouse dev --data-dir /tmp/devbench &   # wait for the banner
  scripts/bench-dev-provision.py /tmp/devbench 30
"""
import base64, json, sys, time, urllib.error, urllib.request

SERVICE, PLAN = "3f9c1a52-7d0e-4b8a-9c61-2e5f0d7b4a10", "a7e4b2c9-1f36-4d85-8b0a-6c3d9e2f5b71"
data_dir, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30
pw = open(f"{data_dir}/broker-password").read().strip()
hdr = {"Authorization": "Basic " + base64.b64encode(f"broker:{pw}".encode()).decode(),
       "X-Broker-API-Version": "2.17", "Content-Type": "application/json",
       "X-Broker-API-Originating-Identity": "bench " + base64.b64encode(b'{"user":"bench"}').decode()}


def call(method, path, body=None):
    req = urllib.request.Request("http://127.0.0.1:8080" + path, method=method, headers=hdr,
                                 data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


stamp = int(time.time())
lat = []
for i in range(n):
    name = f"bench-{stamp}-{i}"
    spec = {"apiVersion": "gatehouse/v1", "kind": "EdgeRoute", "metadata": {"name": name, "team": "bench"},
            "spec": {"hosts": [f"{name}.example.com"], "upstreams": [{"name": "api", "endpoints": ["10.0.0.1:80"]}],
                     "routes": [{"name": "r", "match": {"pathPrefix": "/"}, "upstream": "api",
                                 "rateLimits": [{"name": "ip", "by": ["client.ip"], "limit": "10/second"}]}]}}
    t0 = time.time()
    code, body = call("PUT", f"/v2/service_instances/{name}?accepts_incomplete=true",
                      {"service_id": SERVICE, "plan_id": PLAN, "organization_guid": "o", "space_guid": "s", "parameters": spec})
    if code != 202:
        sys.exit(f"PUT {name}: {code} {body}")
    while True:
        _, st = call("GET", f"/v2/service_instances/{name}/last_operation?operation={body.get('operation', '')}"
                            f"&service_id={SERVICE}&plan_id={PLAN}")
        if st.get("state") != "in progress":
            break
        time.sleep(0.005)
    if st.get("state") != "succeeded":
        sys.exit(f"{name}: {st}")
    lat.append((time.time() - t0) * 1000)
lat.sort()
print(f"n={len(lat)} p50={lat[len(lat) // 2]:.0f} ms max={lat[-1]:.0f} ms min={lat[0]:.0f} ms")
