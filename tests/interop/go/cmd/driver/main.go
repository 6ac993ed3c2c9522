// Command driver runs Pitaya's own Go client (pkg/client) under the control of a test.
//
// It reads one JSON command per line on stdin and writes one JSON event per line on stdout:
//
//	{"seq":1,"op":"connect","addr":"127.0.0.1:3250","ws":false,"path":"/","user":{...}}
//	    -> {"event":"connected","seq":1,"dict":{route: code}} or {"event":"error","seq":1,...}
//	{"seq":2,"op":"request","route":"room.room.echo","data":{...}}
//	    -> {"event":"sent","seq":2,"id":1}, later {"event":"response","id":1,"err":false,"data":...}
//	{"seq":3,"op":"notify","route":"...","data":{...}}       -> {"event":"sent","seq":3}
//	{"seq":4,"op":"disconnect"}                              -> {"event":"disconnected","seq":4}
//
// and, whenever they happen: {"event":"push","route":"onPush","data":...}, {"event":"kicked"}
// (the server sent a kick packet) and {"event":"closed"} (the connection ended without our
// disconnect). "data" is the JSON the server sent, or {"raw": "..."} when it is not JSON.
// stdin closing disconnects and exits.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/topfreegames/pitaya/v3/pkg/client"
	"github.com/topfreegames/pitaya/v3/pkg/conn/message"
	"github.com/topfreegames/pitaya/v3/pkg/logger"
	logruswrapper "github.com/topfreegames/pitaya/v3/pkg/logger/logrus"
	"github.com/topfreegames/pitaya/v3/pkg/session"
)

type command struct {
	Seq     int             `json:"seq"`
	Op      string          `json:"op"`
	Addr    string          `json:"addr"`
	WS      bool            `json:"ws"`
	Path    string          `json:"path"`
	Route   string          `json:"route"`
	Data    json.RawMessage `json:"data"`
	User    map[string]any  `json:"user"`
	Version string          `json:"version"`
}

var out = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func emit(event map[string]any) {
	out.Lock()
	defer out.Unlock()
	if err := out.enc.Encode(event); err != nil {
		fmt.Fprintln(os.Stderr, "driver: cannot write an event:", err)
		os.Exit(1)
	}
}

func payload(data []byte) any {
	if len(data) == 0 {
		return nil
	}
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	return map[string]string{"raw": string(data)}
}

// kickHook turns the client's log line about a kick packet into a "kicked" event: the
// client has no other way to tell a kick from a closed connection.
type kickHook struct{}

func (kickHook) Levels() []logrus.Level { return []logrus.Level{logrus.WarnLevel} }

func (kickHook) Fire(e *logrus.Entry) error {
	if strings.Contains(e.Message, "kick") {
		emit(map[string]any{"event": "kicked"})
	}
	return nil
}

func main() {
	timeout := flag.Duration("timeout", 5*time.Second, "request timeout of the client")
	flag.Parse()

	c := client.New(logrus.WarnLevel, *timeout)
	l := logrus.New()
	l.Out = os.Stderr
	l.SetLevel(logrus.WarnLevel)
	l.AddHook(kickHook{})
	logger.SetLogger(logruswrapper.NewWithFieldLogger(l))

	var connected, closing atomic.Bool
	watch := func() {
		go func() {
			for m := range c.MsgChannel() {
				switch m.Type {
				case message.Push:
					emit(map[string]any{"event": "push", "route": m.Route, "data": payload(m.Data)})
				case message.Response:
					emit(map[string]any{"event": "response", "id": m.ID, "err": m.Err, "data": payload(m.Data)})
				default:
					emit(map[string]any{"event": "message", "type": int(m.Type), "route": m.Route, "data": payload(m.Data)})
				}
			}
		}()
		go func() {
			for c.ConnectedStatus() {
				time.Sleep(5 * time.Millisecond)
			}
			if !closing.Load() {
				emit(map[string]any{"event": "closed"})
			}
		}()
	}

	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 1<<20), 1<<24)
	for lines.Scan() {
		var cmd command
		if err := json.Unmarshal(lines.Bytes(), &cmd); err != nil {
			emit(map[string]any{"event": "error", "error": "bad command: " + err.Error()})
			continue
		}
		fail := func(err error) {
			emit(map[string]any{"event": "error", "seq": cmd.Seq, "op": cmd.Op, "error": err.Error()})
		}
		data := []byte(cmd.Data)
		switch cmd.Op {
		case "connect":
			if cmd.User != nil || cmd.Version != "" {
				hs := &session.HandshakeData{
					Sys:  session.HandshakeClientData{Platform: "go", LibVersion: "pitaya-go-client", Version: cmd.Version},
					User: cmd.User,
				}
				c.SetClientHandshakeData(hs)
			}
			var err error
			if cmd.WS {
				err = c.ConnectToWS(cmd.Addr, cmd.Path)
			} else {
				err = c.ConnectTo(cmd.Addr)
			}
			if err != nil {
				fail(err)
				continue
			}
			connected.Store(true)
			watch()
			emit(map[string]any{"event": "connected", "seq": cmd.Seq, "dict": message.GetDictionary()})
		case "request":
			id, err := c.SendRequest(cmd.Route, data)
			if err != nil {
				fail(err)
				continue
			}
			emit(map[string]any{"event": "sent", "seq": cmd.Seq, "id": id})
		case "notify":
			if err := c.SendNotify(cmd.Route, data); err != nil {
				fail(err)
				continue
			}
			emit(map[string]any{"event": "sent", "seq": cmd.Seq})
		case "disconnect":
			closing.Store(true)
			c.Disconnect()
			emit(map[string]any{"event": "disconnected", "seq": cmd.Seq})
		default:
			fail(fmt.Errorf("unknown op %q", cmd.Op))
		}
	}
	if connected.Load() {
		closing.Store(true)
		c.Disconnect()
	}
}
