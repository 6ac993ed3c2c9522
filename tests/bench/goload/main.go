// A closed-loop request/response load generator, the Go twin of tests/bench/loadgen.py.
//
//	go build -o /tmp/goload . && /tmp/goload -port 3250 -clients 100 -depth 1 -seconds 3
//
// It speaks the same line protocol on stdin/stdout: it connects and handshakes every client,
// prints {"ready": N}, waits for "go" on stdin, keeps depth requests in flight per client
// for -warmup seconds unmeasured and -seconds measured, lets the requests in flight drain
// (at most 5 s) and prints {"count", "errors", "elapsed", "cpu", "histogram"}: responses in
// the window, error responses, the window's length, this process's CPU (user + system, one
// core = 1.0) and the latencies in the 1%-wide logarithmic buckets of harness.Histogram.
//
// Why a second load generator: on a 2-core machine the Python one costs ~5-7 µs of CPU per
// request at one request in flight per client, CPU the server under test cannot use. Here an
// event loop (one by default, -loops) polls the connections' sockets with its own epoll
// instance and reads each readable one once; every whole response in what it read is
// answered with the request of the same id, all of them in one write. The request packets
// (ids 1..depth) are encoded once and reused: a connection's answers come back in order, so
// an id is reused only once its answer arrived. Counters and latency samples are per
// connection and merged at the end: nothing is shared or locked per request, and nothing
// allocated but the amortised growth of the samples.
// What is left is mostly the kernel's: on loopback the write of a request also delivers it
// to the server's socket. A goroutine per connection cost about 1 µs more per request here
// (the runtime's scheduling, and a read per wake-up that finds nothing). TCP only.
package main

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Packet types of the Pitaya/pomelo wire protocol: type:u8 | length:u24 big-endian | body.
const (
	packetHandshake    = 1
	packetHandshakeAck = 2
	packetHeartbeat    = 3
	packetData         = 4
	packetKick         = 5

	headerSize = 4
	maxBody    = 1 << 24

	flagRouteCompressed = 0x01
	flagError           = 0x20
)

// The request body, as loadgen.py sends it.
var body = []byte(`{"msg":"hello, benchmark"}`)

// The client handshake, byte for byte what tests/bench/wire.py sends (sorted keys, no user).
var handshakeBody = []byte(`{"sys":{"libVersion":"0","platform":"bench"}}`)

// Phases of the run, read once per received chunk by every connection.
const (
	phaseWarmup    = iota // sending, not recording
	phaseRecording        // sending and recording
	phaseStopped          // not sending: answers still in flight drain
)

var phase atomic.Int32

func packet(kind byte, payload []byte) []byte {
	out := make([]byte, headerSize, headerSize+len(payload))
	n := len(payload)
	out[0], out[1], out[2], out[3] = kind, byte(n>>16), byte(n>>8), byte(n)
	return append(out, payload...)
}

// requestPacket is a whole DATA packet for a REQUEST: flag, one-byte id (ids < 128), the
// route as a u16 dictionary code when the server gave it one, else len:u8 | UTF-8, the body.
func requestPacket(id int, route string, routes map[string]int) []byte {
	msg := []byte{0, byte(id)}
	if code, ok := routes[route]; ok {
		msg[0] |= flagRouteCompressed
		msg = append(msg, byte(code>>8), byte(code))
	} else {
		msg = append(msg, byte(len(route)))
		msg = append(msg, route...)
	}
	return packet(packetData, append(msg, body...))
}

type handshakeResponse struct {
	Code *int `json:"code"`
	Sys  struct {
		Heartbeat float64        `json:"heartbeat"`
		Dict      map[string]int `json:"dict"`
	} `json:"sys"`
}

// decodeHandshake parses the server's handshake body, plain or zlib-compressed JSON (Pitaya
// may compress it; a JSON text never starts with a zlib header).
func decodeHandshake(raw []byte) (*handshakeResponse, error) {
	if len(raw) > 2 && raw[0]&0x0F == 8 && (int(raw[0])<<8|int(raw[1]))%31 == 0 {
		reader, err := zlib.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("compressed handshake response: %w", err)
		}
		if raw, err = io.ReadAll(io.LimitReader(reader, 1<<20)); err != nil {
			return nil, fmt.Errorf("compressed handshake response: %w", err)
		}
	}
	var response handshakeResponse
	if err := json.Unmarshal(raw, &response); err != nil {
		return nil, fmt.Errorf("handshake response is not JSON: %w", err)
	}
	if response.Code == nil || *response.Code != 200 {
		return nil, fmt.Errorf("handshake refused: %s", raw)
	}
	for route, code := range response.Sys.Dict {
		if code < 1 || code > 0xFFFF {
			return nil, fmt.Errorf("route %q has code %d, not within 1..65535", route, code)
		}
	}
	return &response, nil
}

// client is one connection and everything its event loop touches.
type client struct {
	conn    net.Conn // during the handshake; then fd
	fd      int
	buf     []byte // received bytes; buf[:end] is not yet parsed
	end     int
	out     []byte // the follow-up requests of one read, written at once
	sentAt  []int64
	stopped bool // the run stopped: no more requests, pending left in flight
	pending int
	done    bool
	count   int
	errors  int
	samples []int64 // latencies (ns) of the responses in the window
	lost    error
}

// readPacket returns the next whole packet, reading from the connection when needed; the body
// aliases c.buf and is valid until the following call.
func (c *client) readPacket(start *int) (byte, []byte, error) {
	for {
		if avail := c.end - *start; avail >= headerSize {
			b := c.buf[*start:]
			n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
			if b[0] == 0 || b[0] > packetKick {
				return 0, nil, fmt.Errorf("invalid packet type %d", b[0])
			}
			if avail >= headerSize+n {
				*start += headerSize + n
				return b[0], b[headerSize : headerSize+n], nil
			}
			c.makeRoom(start, headerSize+n)
		} else {
			c.makeRoom(start, headerSize)
		}
		got, err := c.conn.Read(c.buf[c.end:])
		if err != nil {
			return 0, nil, err
		}
		c.end += got
	}
}

// makeRoom moves the unparsed bytes from *start to the front of buf and grows buf until it
// holds need bytes of them plus some free space.
func (c *client) makeRoom(start *int, need int) {
	if *start > 0 {
		c.end = copy(c.buf, c.buf[*start:c.end])
		*start = 0
	}
	if len(c.buf) < need || c.end == len(c.buf) {
		grown := make([]byte, max(2*len(c.buf), need+4096))
		copy(grown, c.buf[:c.end])
		c.buf = grown
	}
}

// handshake connects, sends the handshake, reads the answer and acknowledges it.
func handshake(address string, timeout time.Duration) (*client, *handshakeResponse, error) {
	conn, err := net.DialTimeout("tcp", address, timeout)
	if err != nil {
		return nil, nil, err
	}
	c := &client{conn: conn, buf: make([]byte, 4096)} // grown for a bigger packet
	fail := func(err error) (*client, *handshakeResponse, error) {
		conn.Close()
		return nil, nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fail(err)
	}
	if _, err := conn.Write(packet(packetHandshake, handshakeBody)); err != nil {
		return fail(err)
	}
	start := 0
	for {
		kind, payload, err := c.readPacket(&start)
		if err != nil {
			return fail(fmt.Errorf("before the handshake: %w", err))
		}
		if kind != packetHandshake {
			continue
		}
		response, err := decodeHandshake(payload)
		if err != nil {
			return fail(err)
		}
		if start < c.end { // a server speaks only after the ack
			return fail(errors.New("data before the handshake ack"))
		}
		c.end = 0
		if _, err := conn.Write(packet(packetHandshakeAck, nil)); err != nil {
			return fail(err)
		}
		return c, response, conn.SetDeadline(time.Time{})
	}
}

// connectAll opens and handshakes n connections, at most 100 handshakes at once.
func connectAll(address string, n int) ([]*client, *handshakeResponse, error) {
	clients := make([]*client, n)
	responses := make([]*handshakeResponse, n)
	errs := make([]error, n)
	gate := make(chan struct{}, 100)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gate <- struct{}{}
			defer func() { <-gate }()
			clients[i], responses[i], errs[i] = handshake(address, 10*time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			for _, c := range clients {
				if c != nil {
					c.conn.Close()
				}
			}
			return nil, nil, fmt.Errorf("client %d of %d: %w", i+1, n, err)
		}
	}
	return clients, responses[0], nil
}

// detach swaps the connection for a duplicate of its descriptor that the event loop reads
// and writes itself (non-blocking, as Go left it); closing the net.Conn takes the socket out
// of Go's own poller without ending the connection, which the duplicate keeps open.
func (c *client) detach() error {
	raw, err := c.conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return err
	}
	var dupErr error
	if err := raw.Control(func(fd uintptr) { c.fd, dupErr = syscall.Dup(int(fd)) }); err != nil {
		return err
	}
	if dupErr != nil {
		return dupErr
	}
	c.conn.Close()
	c.conn = nil
	return syscall.SetNonblock(c.fd, true)
}

// write sends all of data. The socket buffer holds far more than depth requests, so a
// short write does not happen in practice; should it, this waits for room (the server
// never stops reading while it has answers to write, so this cannot deadlock).
func write(fd int, data []byte) error {
	for len(data) > 0 {
		n, errno := rawIO(syscall.SYS_WRITE, fd, data)
		switch errno {
		case 0:
			data = data[n:]
		case syscall.EINTR:
		case syscall.EAGAIN:
			time.Sleep(50 * time.Microsecond)
		default:
			return errno
		}
	}
	return nil
}

// rawIO is read(2) or write(2) on a non-blocking socket without the runtime's system call
// bookkeeping, which is there for calls that may block: these never do.
func rawIO(call uintptr, fd int, data []byte) (int, syscall.Errno) {
	n, _, errno := syscall.RawSyscall(call, uintptr(fd), uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)))
	return int(n), errno
}

// start sends requests 1..depth at once.
func (c *client) start(wire [][]byte, base time.Time) {
	now := int64(time.Since(base))
	out := c.out[:0]
	for id := 1; id < len(wire); id++ {
		c.sentAt[id] = now
		out = append(out, wire[id]...)
	}
	if err := write(c.fd, out); err != nil {
		c.fail(err)
	}
}

func (c *client) fail(err error) {
	c.lost, c.done = err, true
}

// receive reads what the socket holds (once: the poller is level-triggered), answers every
// whole response with the request of the same id, or, once the run stopped, counts down the
// requests in flight; the connection is done when none is left.
func (c *client) receive(wire [][]byte, base time.Time) {
	got, errno := rawIO(syscall.SYS_READ, c.fd, c.buf[c.end:])
	switch {
	case errno == syscall.EAGAIN || errno == syscall.EINTR:
		return
	case errno != 0:
		c.fail(errno)
		return
	case got == 0:
		c.fail(io.EOF)
		return
	}
	c.end += got
	now := int64(time.Since(base))
	current := phase.Load()
	recording := current == phaseRecording
	if current == phaseStopped && !c.stopped {
		c.stopped, c.pending = true, len(wire)-1
	}
	depth := len(wire) - 1
	out := c.out[:0]
	b := c.buf[:c.end]
	offset := 0
	for len(b)-offset >= headerSize {
		kind := b[offset]
		if kind == 0 || kind > packetKick {
			c.fail(fmt.Errorf("invalid packet type %d", kind))
			return
		}
		stop := offset + headerSize + (int(b[offset+1])<<16 | int(b[offset+2])<<8 | int(b[offset+3]))
		if stop > len(b) {
			break
		}
		if kind != packetData || stop-offset < headerSize+2 {
			offset = stop
			continue
		}
		flag, id := b[offset+headerSize], int(b[offset+headerSize+1])
		offset = stop
		if id < 1 || id > depth { // ids <= 127: a one-byte varint
			continue
		}
		if flag&flagError != 0 {
			c.errors++
		}
		if recording {
			c.count++
			c.samples = append(c.samples, now-c.sentAt[id])
		}
		if !c.stopped {
			c.sentAt[id] = now
			out = append(out, wire[id]...)
		} else {
			c.pending--
		}
	}
	// Keep the incomplete tail at the front; grow for a packet bigger than the buffer.
	c.end = copy(c.buf, b[offset:])
	if c.end >= headerSize {
		need := headerSize + (int(c.buf[1])<<16 | int(c.buf[2])<<8 | int(c.buf[3]))
		if need > len(c.buf) {
			grown := make([]byte, need+4096)
			copy(grown, c.buf[:c.end])
			c.buf = grown
		}
	}
	if len(out) > 0 {
		if err := write(c.fd, out); err != nil {
			c.fail(err)
			return
		}
	}
	if c.stopped && c.pending <= 0 {
		c.done = true
	}
}

// loop is an event loop over some of the connections: it starts each, then reads whichever
// is readable, until every one of them is done or quit is set. Its epoll instance is polled
// without blocking, and waited for through Go's own poller (an epoll descriptor is readable
// while it has events): no thread blocks in a system call, so the runtime never hands a
// processor over to another thread for it. The loop also writes a heartbeat on each
// connection every interval the server asked for, as wire.py's clients do (pinus closes a
// connection that sends none for two intervals, whatever else it sends).
func loop(clients []*client, wire [][]byte, base time.Time, interval time.Duration, quit *atomic.Bool) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		return err
	}
	poller := os.NewFile(uintptr(epfd), "epoll") // closes epfd when closed
	defer poller.Close()
	raw, err := poller.SyscallConn()
	if err != nil {
		return err
	}
	byFd := map[int32]*client{}
	live := 0
	for _, c := range clients {
		event := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(c.fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, c.fd, &event); err != nil {
			return err
		}
		byFd[int32(c.fd)] = c
		c.start(wire, base)
		if !c.done {
			live++
		}
	}
	finish := func(c *client) {
		live--
		syscall.EpollCtl(epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
	beat := packet(packetHeartbeat, nil)
	const tick = 100 * time.Millisecond // how soon quit is noticed
	nextBeat := time.Now().Add(interval)
	events := make([]syscall.EpollEvent, 512)
	ready := 0
	wait := func(fd uintptr) bool {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, fd,
			uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		ready = int(n)
		return errno != 0 || ready > 0
	}
	for live > 0 && !quit.Load() {
		now := time.Now()
		wake := now.Add(tick)
		if interval > 0 && nextBeat.Before(wake) {
			wake = nextBeat
		}
		if err := poller.SetReadDeadline(wake); err != nil {
			return err
		}
		for live > 0 {
			ready = 0
			if err := raw.Read(wait); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return err
			}
			for _, event := range events[:max(ready, 0)] {
				if c := byFd[event.Fd]; !c.done {
					c.receive(wire, base)
					if c.done {
						finish(c)
					}
				}
			}
		}
		if interval > 0 && !time.Now().Before(nextBeat) {
			nextBeat = nextBeat.Add(interval)
			for _, c := range clients {
				if c.done {
					continue
				}
				if err := write(c.fd, beat); err != nil {
					c.fail(err)
					finish(c)
				}
			}
		}
	}
	return nil
}

// idleHeartbeats keeps the connections alive while they wait for "go" (the parent may start
// several load processes and wait for all of them): a heartbeat on each every interval.
func idleHeartbeats(clients []*client, interval time.Duration, stop <-chan struct{}, stopped chan<- struct{}) {
	defer close(stopped)
	if interval <= 0 {
		return
	}
	beat := packet(packetHeartbeat, nil)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
			for _, c := range clients {
				write(c.fd, beat) // a failed connection is reported once the run starts
			}
		}
	}
}

func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return math.NaN()
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

// histogram folds latencies into harness.Histogram's buckets: int(ln(µs) * 100), 0 for
// latencies up to 1 µs; keys are strings as in its to_json.
func histogram(clients []*client) map[string]int {
	counts := map[int]int{}
	for _, c := range clients {
		for _, ns := range c.samples {
			us := float64(ns) / 1e3
			key := 0
			if us > 1 {
				key = int(math.Log(us) * 100)
			}
			counts[key]++
		}
	}
	out := make(map[string]int, len(counts))
	for key, count := range counts {
		out[strconv.Itoa(key)] = count
	}
	return out
}

func closeAll(clients []*client) {
	for _, c := range clients {
		syscall.Close(c.fd)
	}
}

func emit(value any) {
	line, err := json.Marshal(value)
	if err != nil {
		fatal(err)
	}
	os.Stdout.Write(append(line, '\n'))
}

func fatal(err error) {
	fmt.Fprintf(os.Stderr, "goload: %v\n", err)
	os.Exit(1)
}

func main() {
	port := flag.Int("port", 0, "server TCP port (required)")
	host := flag.String("host", "127.0.0.1", "server host")
	clients := flag.Int("clients", 1, "connections")
	depth := flag.Int("depth", 1, "requests in flight per client (1..127)")
	route := flag.String("route", "echo.echo", "the route requested (body is JSON)")
	seconds := flag.Float64("seconds", 2.0, "measuring window")
	warmup := flag.Float64("warmup", 0.5, "unmeasured run before the window")
	maxSeconds := flag.Float64("max-seconds", 120.0, "hard lifetime")
	loops := flag.Int("loops", 1, "event loops (threads) sharing the connections")
	ws := flag.Bool("ws", false, "refused: this load generator speaks TCP only")
	flag.Parse()
	switch {
	case *ws:
		fatal(errors.New("-ws: WebSocket is not supported (TCP only); use tests.bench.loadgen"))
	case *port <= 0 || *port > 65535:
		fatal(errors.New("-port is required (1..65535)"))
	case *depth < 1 || *depth > 127:
		fatal(errors.New("-depth must be within 1..127 (one-byte message ids)"))
	case *clients < 1:
		fatal(errors.New("-clients must be at least 1"))
	case len(*route) == 0 || len(*route) > 255:
		fatal(errors.New("-route must have 1..255 bytes"))
	case *loops < 1:
		fatal(errors.New("-loops must be at least 1"))
	case flag.NArg() > 0:
		fatal(fmt.Errorf("unexpected arguments %q", flag.Args()))
	}
	time.AfterFunc(time.Duration(*maxSeconds*float64(time.Second)), func() {
		fatal(fmt.Errorf("lifetime of %gs reached", *maxSeconds))
	})

	address := net.JoinHostPort(*host, strconv.Itoa(*port))
	conns, response, err := connectAll(address, *clients)
	if err != nil {
		fatal(err)
	}
	wire := make([][]byte, *depth+1)
	for id := 1; id <= *depth; id++ {
		wire[id] = requestPacket(id, *route, response.Sys.Dict)
	}
	for _, c := range conns {
		c.sentAt = make([]int64, *depth+1)
		c.out = make([]byte, 0, *depth*len(wire[1]))
		if err := c.detach(); err != nil {
			fatal(err)
		}
	}
	interval := time.Duration(response.Sys.Heartbeat * float64(time.Second))
	emit(map[string]int{"ready": len(conns)})
	stopBeats, beatsStopped := make(chan struct{}), make(chan struct{})
	go idleHeartbeats(conns, interval, stopBeats, beatsStopped)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	close(stopBeats)
	<-beatsStopped // from now on only the event loops write
	if string(bytes.TrimSpace([]byte(line))) != "go" {
		closeAll(conns)
		return
	}

	base := time.Now()
	var quit atomic.Bool
	var drained sync.WaitGroup
	parts := min(*loops, len(conns))
	for part := range parts {
		var mine []*client
		for i := part; i < len(conns); i += parts {
			mine = append(mine, conns[i])
		}
		drained.Add(1)
		go func() {
			defer drained.Done()
			if err := loop(mine, wire, base, interval, &quit); err != nil {
				fatal(err)
			}
		}()
	}
	time.Sleep(time.Duration(*warmup * float64(time.Second)))
	phase.Store(phaseRecording)
	cpuStart, start := cpuSeconds(), time.Now()
	time.Sleep(time.Duration(*seconds * float64(time.Second)))
	phase.Store(phaseStopped)
	elapsed, cpu := time.Since(start).Seconds(), cpuSeconds()-cpuStart
	// Closing with responses still on their way would only make the server log errors.
	done := make(chan struct{})
	go func() { drained.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		quit.Store(true)
		<-done
	}
	closeAll(conns)
	count, errs, lost := 0, 0, 0
	for _, c := range conns {
		count += c.count
		errs += c.errors
		if c.lost != nil {
			lost++
		}
	}
	if lost > 0 {
		fmt.Fprintf(os.Stderr, "goload: %d of %d connections failed during the run\n", lost, len(conns))
	}
	emit(map[string]any{
		"count":     count,
		"errors":    errs,
		"elapsed":   elapsed,
		"cpu":       cpu / elapsed,
		"histogram": histogram(conns),
	})
}
