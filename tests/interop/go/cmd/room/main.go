// Command room is the interop suite's Go Pitaya backend (server type "room"), in the style of
// Pitaya's examples/demo/cluster: client routes "room.room.*" (request and notify handlers,
// backend-session bind, push to front, push, kick, push and kick by uid, user RPCs, errors
// with custom codes, a silent handler) and the remote "room.roomremote.*". See ../../README.md.
package main

import (
	"interop/servers"
)

func main() {
	o := servers.ParseOptions("room")
	s := servers.Build("room", false, o)
	s.Register("room", "roomremote")
	s.Run()
}
