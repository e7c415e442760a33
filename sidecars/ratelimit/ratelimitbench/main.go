// Command ratelimitbench is the load generator and comparison harness
// behind `make bench-ratelimit`. It drives any RLS v3 server over gRPC with
// a fixed number of concurrent callers over a fixed key space, for a
// bounded time and count, and reports requests/s and latency percentiles;
// `compare` starts redis-server, envoyproxy/ratelimit, Gatehouse and a
// do-nothing RLS server, drives each the same way, measures the CPU of the
// service and of Redis from /proc, replays the scripted allow/deny
// sequence against both services, and prints a side-by-side table.
//
// It is a tool, not a library: nothing imports it. All servers bind
// 127.0.0.1.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "noop":
		err = runNoop(os.Args[2:])
	case "drive":
		err = runDrive(os.Args[2:])
	case "replay":
		err = runReplay(os.Args[2:])
	case "compare":
		err = runCompare(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ratelimitbench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: ratelimitbench noop|drive|replay|compare [flags]
  noop     serve a do-nothing RLS v3 server (the floor)
  drive    load an RLS v3 server and print requests/s, p50, p99
  replay   replay a script against an RLS v3 server
  compare  run envoyproxy/ratelimit and Gatehouse on one redis-server and print the table`)
	os.Exit(2)
}

func newFlags(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ExitOnError) }
