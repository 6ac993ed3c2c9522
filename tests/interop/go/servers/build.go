package servers

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/sirupsen/logrus"
	pitaya "github.com/topfreegames/pitaya/v3/pkg"
	"github.com/topfreegames/pitaya/v3/pkg/acceptor"
	"github.com/topfreegames/pitaya/v3/pkg/cluster"
	"github.com/topfreegames/pitaya/v3/pkg/config"
	"github.com/topfreegames/pitaya/v3/pkg/constants"
	"github.com/topfreegames/pitaya/v3/pkg/groups"
	"github.com/topfreegames/pitaya/v3/pkg/logger"
	logruswrapper "github.com/topfreegames/pitaya/v3/pkg/logger/logrus"
	"github.com/topfreegames/pitaya/v3/pkg/modules"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Server is one built Pitaya app with the acceptors it listens on.
type Server struct {
	App       pitaya.Pitaya
	Options   Options
	Type      string
	acceptors map[string]acceptor.Acceptor
}

// Build makes a Pitaya app in cluster mode: etcd discovery under Options.Prefix (groups and
// the binding storage under their own prefixes, Prefix unless given), and RPC over
// NATS or over gRPC (then with Pitaya's etcd binding storage, which its gRPC client needs).
func Build(serverType string, frontend bool, o Options) *Server {
	setupLogging(o.LogLevel)

	if o.Tracing {
		// Spans recorded (and their context propagated under "otel-span") but exported nowhere:
		// the handlers answer their trace id, which is all the tests compare.
		otel.SetTracerProvider(sdktrace.NewTracerProvider())
		otel.SetTextMapPropagator(propagation.TraceContext{})
	}

	conf := config.NewDefaultPitayaConfig()
	conf.Heartbeat.Interval = o.Heartbeat
	sd := &conf.Cluster.SD.Etcd
	sd.Endpoints = o.Etcd
	sd.Prefix = o.Prefix
	sd.Heartbeat.TTL = o.LeaseTTL
	sd.SyncServers.Interval = o.SyncEvery
	sd.Shutdown.Delay = 0
	// Pitaya builds its NATS client and server even when gRPC replaces them, and refuses an
	// empty url; with gRPC nothing ever connects to it.
	conf.Cluster.RPC.Client.Nats.Connect = o.NatsURL
	conf.Cluster.RPC.Server.Nats.Connect = o.NatsURL
	conf.Cluster.RPC.Client.Nats.RequestTimeout = o.RPCTimeout
	conf.Cluster.RPC.Client.Grpc.RequestTimeout = o.RPCTimeout
	conf.Cluster.RPC.Server.Grpc.Port = o.GRPCPort
	bs := &conf.Modules.BindingStorage.Etcd
	bs.Endpoints = o.Etcd
	bs.Prefix = o.BindingsPrefix
	conf.Groups.Etcd.Endpoints = o.Etcd
	conf.Groups.Etcd.Prefix = o.GroupsPrefix

	metadata := map[string]string{"lang": "go"}
	if o.RPC == "grpc" {
		port := strconv.Itoa(o.GRPCPort)
		metadata[constants.GRPCHostKey] = o.GRPCHost
		metadata[constants.GRPCPortKey] = port
		if o.GRPCExternalHost != "" {
			// Pitaya's multi-region layout: peers of another region dial the external host.
			metadata = pitaya.AddGRPCInfoToMetadata(metadata, o.Region, o.GRPCHost, port, o.GRPCExternalHost, port)
		}
	}
	conf.Cluster.Info.Region = o.Region
	builder := pitaya.NewDefaultBuilder(frontend, serverType, pitaya.Cluster, metadata, *conf)
	// The builder names the server with a random uuid; the tests address it by a known id.
	// Every component holds the same *cluster.Server and reads the id when it starts.
	builder.Server.ID = o.ID

	// Groups in etcd (Pitaya's default is in memory), so both languages share them.
	groupService, err := groups.NewEtcdGroupService(conf.Groups.Etcd, nil)
	if err != nil {
		fatal("etcd groups: %v", err)
	}
	builder.Groups = groupService

	s := &Server{Options: o, Type: serverType, acceptors: map[string]acceptor.Acceptor{}}
	if frontend {
		if o.TCPAddr != "" {
			s.acceptors["tcp"] = acceptor.NewTCPAcceptor(o.TCPAddr)
		}
		if o.WSAddr != "" {
			s.acceptors["ws"] = acceptor.NewWSAcceptor(o.WSAddr)
		}
		for _, name := range []string{"tcp", "ws"} {
			if a, ok := s.acceptors[name]; ok {
				builder.AddAcceptor(a)
			}
		}
	}

	var storage *modules.ETCDBindingStorage
	if o.RPC == "grpc" {
		server, err := cluster.NewGRPCServer(conf.Cluster.RPC.Server.Grpc, builder.Server, builder.MetricsReporters)
		if err != nil {
			fatal("grpc server: %v", err)
		}
		builder.RPCServer = server
		storage = modules.NewETCDBindingStorage(builder.Server, builder.SessionPool, *bs)
		client, err := cluster.NewGRPCClient(
			conf.Cluster.RPC.Client.Grpc, builder.Server, builder.MetricsReporters, storage,
			cluster.NewInfoRetriever(conf.Cluster.Info),
		)
		if err != nil {
			fatal("grpc client: %v", err)
		}
		builder.RPCClient = client
	}
	s.App = builder.Build()
	if storage != nil {
		if err := s.App.RegisterModule(storage, "bindingsStorage"); err != nil {
			fatal("binding storage: %v", err)
		}
	}
	// Registered last among our modules: its AfterInit runs once every module (discovery
	// included, which Pitaya starts after all others) has initialised.
	if err := s.App.RegisterModule(&readyModule{server: s}, "interopReady"); err != nil {
		fatal("ready module: %v", err)
	}
	return s
}

// Run serves until SIGTERM/SIGINT, then Pitaya's graceful shutdown.
func (s *Server) Run() {
	defer s.App.Shutdown()
	s.App.Start()
}

// readyModule prints one JSON line on stdout when the server is up: the harness waits for it
// (and reads the acceptors' real ports from it) instead of sleeping.
type readyModule struct {
	modules.Base
	server *Server
}

func (m *readyModule) AfterInit() {
	ready := map[string]any{
		"event": "ready",
		"id":    m.server.Options.ID,
		"type":  m.server.Type,
		"rpc":   m.server.Options.RPC,
	}
	for name, a := range m.server.acceptors {
		ready[name] = a.GetAddr()
	}
	if m.server.Options.RPC == "grpc" {
		ready["grpc_port"] = m.server.Options.GRPCPort
	}
	printJSON(ready)
}

func printJSON(v any) {
	line, err := json.Marshal(v)
	if err != nil {
		fatal("json: %v", err)
	}
	fmt.Fprintln(os.Stdout, string(line))
}

func setupLogging(level string) {
	l := logrus.New()
	l.Out = os.Stderr
	l.Formatter = &logrus.TextFormatter{DisableColors: true}
	parsed, err := logrus.ParseLevel(level)
	if err != nil {
		parsed = logrus.InfoLevel
	}
	l.SetLevel(parsed)
	logger.SetLogger(logruswrapper.NewWithFieldLogger(l))
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
