// The Go Pitaya peer of the benchmark suite: a standalone frontend serving echo.echo over TCP,
// written with Pitaya v3's public API and its default configuration.
//
//	go build -o /tmp/goecho . && /tmp/goecho -port 3250
//
// Two departures from Pitaya's defaults, both so that it does the same work as the other
// servers: the log level is info (Pitaya logs at debug level out of the box, a line per
// response), and responses are not deflate-compressed (on by default; no other server in the
// suite compresses, and Pitaya's own chat example turns it off too). Built and started by
// tests/bench/peers.py; its binary is never committed.
package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/sirupsen/logrus"
	pitaya "github.com/topfreegames/pitaya/v3/pkg"
	"github.com/topfreegames/pitaya/v3/pkg/acceptor"
	"github.com/topfreegames/pitaya/v3/pkg/component"
	"github.com/topfreegames/pitaya/v3/pkg/config"
	"github.com/topfreegames/pitaya/v3/pkg/logger"
	logruswrapper "github.com/topfreegames/pitaya/v3/pkg/logger/logrus"
)

// EchoBody is the benchmark's request body, decoded and encoded by the JSON serializer as a
// typed handler would (our echo sample decodes and re-encodes the body too).
type EchoBody struct {
	Msg string `json:"msg"`
}

// Echo is the echo service: echo.echo answers the request body.
type Echo struct {
	component.Base
}

// Echo answers the body it was sent.
func (e *Echo) Echo(ctx context.Context, body *EchoBody) (*EchoBody, error) {
	return body, nil
}

func main() {
	port := flag.Int("port", 3250, "TCP port of the client acceptor")
	compression := flag.Bool("compression", false, "deflate responses (Pitaya's default: on)")
	flag.Parse()

	log := logrus.New()
	log.Level = logrus.InfoLevel
	logger.SetLogger(logruswrapper.NewWithLogger(log))

	conf := config.NewDefaultPitayaConfig()
	conf.Handler.Messages.Compression = *compression
	builder := pitaya.NewDefaultBuilder(true, "echo", pitaya.Standalone, map[string]string{}, *conf)
	builder.AddAcceptor(acceptor.NewTCPAcceptor(fmt.Sprintf("127.0.0.1:%d", *port)))
	app := builder.Build()
	defer app.Shutdown()
	app.Register(&Echo{}, component.WithName("echo"), component.WithNameFunc(lowerFirst))
	app.Start()
}

// lowerFirst names the handler method "echo", as clients call it (Pitaya's examples use
// strings.ToLower; one word needs no more).
func lowerFirst(name string) string {
	if name == "" {
		return name
	}
	return string(name[0]|0x20) + name[1:]
}
