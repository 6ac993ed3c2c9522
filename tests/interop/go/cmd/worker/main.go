// Command worker is the interop suite's Go side of Pitaya's reliable RPCs (pkg/worker, on
// go-workers and Redis), through Pitaya's public API only:
//
//	worker -redis 127.0.0.1:6379 -mode enqueue -route room.grants.push -uid ann -data hi
//	    EnqueueRPC(route, {"from": "go"}, nil, &protos.Push{...}): prints {"event":"enqueued","jid":...}
//	worker -redis 127.0.0.1:6379 -mode work
//	    RegisterRPCJob + Start: prints {"event":"job","route","metadata","arg"} per job run
//
// Both print {"event":"ready"} once configured. The argument type is protos.Push (route, uid,
// data bytes: base64 in the job's JSON), chosen to exercise Go's JSON of a generated struct.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/topfreegames/pitaya/v3/pkg/config"
	"github.com/topfreegames/pitaya/v3/pkg/protos"
	"github.com/topfreegames/pitaya/v3/pkg/worker"
	"google.golang.org/protobuf/runtime/protoiface"
)

var out = json.NewEncoder(os.Stdout)
var outMu sync.Mutex

func emit(event map[string]interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(event); err != nil {
		fmt.Fprintln(os.Stderr, "cannot write:", err)
	}
}

func fail(err error) {
	emit(map[string]interface{}{"event": "error", "error": err.Error()})
	os.Exit(1)
}

// pushJob is the worker's RPCJob: every route takes and returns a protos.Push; the
// server discovery only records the job's metadata (the RPC itself is printed, not sent).
type pushJob struct {
	mu       sync.Mutex
	metadata map[string]interface{}
}

func (j *pushJob) ServerDiscovery(route string, metadata map[string]interface{}) (string, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.metadata = metadata
	return "any-server", nil
}

func (j *pushJob) RPC(
	ctx context.Context, serverID, route string, reply, arg protoiface.MessageV1,
) error {
	j.mu.Lock()
	metadata := j.metadata
	j.mu.Unlock()
	emit(map[string]interface{}{
		"event": "job", "route": route, "server": serverID, "metadata": metadata, "arg": arg,
	})
	return nil
}

func (j *pushJob) GetArgReply(route string) (arg, reply protoiface.MessageV1, err error) {
	return &protos.Push{}, &protos.Push{}, nil
}

func main() {
	redis := flag.String("redis", "127.0.0.1:6379", "Redis address (host:port)")
	password := flag.String("password", "", "Redis password")
	namespace := flag.String("namespace", "", "go-workers namespace")
	mode := flag.String("mode", "enqueue", "enqueue or work")
	route := flag.String("route", "room.grants.push", "route of the enqueued RPC")
	uid := flag.String("uid", "ann", "the Push argument's uid")
	data := flag.String("data", "hi", "the Push argument's data")
	flag.Parse()

	cfg := config.WorkerConfig{Namespace: *namespace, Concurrency: 1}
	cfg.Redis.ServerURL = *redis
	cfg.Redis.Pool = "5"
	cfg.Redis.Password = *password
	opts := config.EnqueueOpts{Enabled: true, Max: 2, Exponential: 5, MinDelay: 10, MaxDelay: 10}
	w, err := worker.NewWorker(cfg, opts)
	if err != nil {
		fail(err)
	}

	switch *mode {
	case "enqueue":
		emit(map[string]interface{}{"event": "ready"})
		arg := &protos.Push{Route: "chat", Uid: *uid, Data: []byte(*data)}
		jid, err := w.EnqueueRPC(*route, map[string]interface{}{"from": "go"}, nil, arg)
		if err != nil {
			fail(err)
		}
		emit(map[string]interface{}{"event": "enqueued", "jid": jid})
	case "work":
		if err := w.RegisterRPCJob(&pushJob{}); err != nil {
			fail(err)
		}
		w.Start()
		emit(map[string]interface{}{"event": "ready"})
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
	default:
		fail(fmt.Errorf("unknown mode %q", *mode))
	}
}
