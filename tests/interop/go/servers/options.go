// Package servers builds the interop suite's Go Pitaya servers: a "connector" frontend and a
// "room" backend, both written against Pitaya's public API only. The routes they serve are
// listed in ../README.md; the Python servers in tests/interop/pynodes.py serve the same ones,
// so one test can run against either language.
package servers

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
)

// Options is what one server process takes on its command line. Every flag also reads an
// environment variable (INTEROP_<FLAG> with dashes as underscores), the flag winning.
type Options struct {
	ID         string
	NatsURL    string
	Etcd       []string
	Prefix     string
	RPC        string // "nats" or "grpc"
	GRPCPort   int
	TCPAddr    string // frontend only; "" for none
	WSAddr     string // frontend only; "" for none
	RPCTimeout time.Duration
	LeaseTTL   time.Duration
	SyncEvery  time.Duration
	Heartbeat  time.Duration
	LogLevel   string
	Tracing    bool
	// Pitaya's pitaya.groups.etcd.prefix and pitaya.modules.bindingstorage.etcd.prefix
	// (Prefix when not given).
	GroupsPrefix   string
	BindingsPrefix string
	// gRPC's advertised hosts and this server's region (pitaya.cluster.info.region).
	GRPCHost         string
	GRPCExternalHost string
	Region           string
}

func env(name, fallback string) string {
	if v, ok := os.LookupEnv("INTEROP_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); ok {
		return v
	}
	return fallback
}

func envDuration(name string, fallback time.Duration) time.Duration {
	raw := env(name, "")
	if raw == "" {
		return fallback
	}
	d, err := time.ParseDuration(raw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad duration in INTEROP_%s: %v\n", strings.ToUpper(name), err)
		os.Exit(2)
	}
	return d
}

// ParseOptions reads the flags of a server of the given role ("connector" or "room").
func ParseOptions(role string) Options {
	var o Options
	var etcd string
	frontend := role == "connector"
	flag.StringVar(&o.ID, "id", env("id", role+"-go-1"), "server id")
	flag.StringVar(&o.NatsURL, "nats", env("nats", "nats://127.0.0.1:4222"), "NATS url")
	flag.StringVar(&etcd, "etcd", env("etcd", "127.0.0.1:2379"), "etcd endpoints, comma separated")
	flag.StringVar(&o.Prefix, "prefix", env("prefix", "pitaya/"), "etcd key prefix")
	flag.StringVar(&o.GroupsPrefix, "groups-prefix", env("groups-prefix", ""), "etcd groups' key prefix (empty: -prefix)")
	flag.StringVar(&o.BindingsPrefix, "bindings-prefix", env("bindings-prefix", ""), "binding storage's key prefix (empty: -prefix)")
	flag.StringVar(&o.GRPCHost, "grpc-host", env("grpc-host", "127.0.0.1"), "gRPC host advertised (grpcHost)")
	flag.StringVar(&o.GRPCExternalHost, "grpc-external-host", env("grpc-external-host", ""), "gRPC host advertised to other regions (empty: none)")
	flag.StringVar(&o.Region, "region", env("region", ""), "this server's region")
	flag.StringVar(&o.RPC, "rpc", env("rpc", "nats"), "RPC transport: nats or grpc")
	flag.IntVar(&o.GRPCPort, "grpc-port", 0, "gRPC server port (rpc=grpc)")
	if frontend {
		flag.StringVar(&o.TCPAddr, "tcp", env("tcp", "127.0.0.1:0"), "TCP acceptor address (empty: none)")
		flag.StringVar(&o.WSAddr, "ws", env("ws", "127.0.0.1:0"), "WebSocket acceptor address (empty: none)")
	}
	flag.DurationVar(&o.RPCTimeout, "rpc-timeout", envDuration("rpc-timeout", 2*time.Second), "RPC request timeout")
	flag.DurationVar(&o.LeaseTTL, "lease-ttl", envDuration("lease-ttl", 5*time.Second), "etcd lease TTL")
	flag.DurationVar(&o.SyncEvery, "sync", envDuration("sync", 2*time.Second), "etcd full sync interval")
	flag.DurationVar(&o.Heartbeat, "heartbeat", envDuration("heartbeat", 30*time.Second), "client heartbeat interval")
	flag.StringVar(&o.LogLevel, "log-level", env("log-level", "info"), "logrus level")
	flag.BoolVar(&o.Tracing, "tracing", env("tracing", "") == "1", "record OpenTelemetry spans (no exporter)")
	flag.Parse()
	if o.GRPCPort == 0 {
		if raw := env("grpc-port", ""); raw != "" {
			fmt.Sscanf(raw, "%d", &o.GRPCPort)
		}
	}
	o.Etcd = strings.Split(etcd, ",")
	if o.GroupsPrefix == "" {
		o.GroupsPrefix = o.Prefix
	}
	if o.BindingsPrefix == "" {
		o.BindingsPrefix = o.Prefix
	}
	if o.RPC != "nats" && o.RPC != "grpc" {
		fmt.Fprintf(os.Stderr, "-rpc must be nats or grpc, not %q\n", o.RPC)
		os.Exit(2)
	}
	if o.RPC == "grpc" && o.GRPCPort == 0 {
		fmt.Fprintln(os.Stderr, "-rpc grpc needs -grpc-port")
		os.Exit(2)
	}
	return o
}
