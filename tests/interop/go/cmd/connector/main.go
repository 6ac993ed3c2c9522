// Command connector is the interop suite's Go Pitaya frontend (server type "connector"):
// TCP and WebSocket acceptors, its own routes "connector.me.*" and the remote
// "connector.connectorremote.*", and every "room.*" route forwarded to a room server (Pitaya's
// default: the router picks one at random). See ../../README.md.
package main

import (
	"interop/servers"
)

func main() {
	o := servers.ParseOptions("connector")
	s := servers.Build("connector", true, o)
	s.Register("me", "connectorremote")
	// Compressed routes: a client sends these as 2-byte codes, and pushes on them come back so.
	if err := s.App.SetDictionary(map[string]uint16{
		"connector.me.echo": 1,
		"room.room.echo":    2,
		"onPush":            3,
	}); err != nil {
		panic(err)
	}
	s.Run()
}
