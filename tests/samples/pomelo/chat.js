// The chat sample driven by a published pomelo client, through its own API only:
// pomelo-client-websocket (npm), NetEase's pomelo-jsclient-websocket with its pomelo-protocol
// made to run in Node over the `ws` package. Run by tests/samples/test_pomelo_client.py:
//
//   node chat.js <the package's directory> <host> <WebSocket port>
//
// Two members, ann and bob, connect (handshake with user data), join, chat by request and by
// notify, get three errors, stay idle while the server sends 5 heartbeats (the client's own
// heartbeats must keep them connected), ann disconnects (bob is told), then the script
// prints "kick me" and waits for the server's kick. It prints what it saw as one JSON object.
//
// What the client does by itself is left as is. Two quirks of its bundled pomelo-protocol
// shape the script: request ids are written high group first (pomelo's old order; Pitaya's
// and pomelo-protocol 0.1.6's are low group first), so only ids below 128 agree, and this
// script sends fewer than 128 requests per client; and it never compresses the routes it
// sends (it looks for the route dictionary in a field its handshake does not fill).
"use strict";

const [packageDir, host, port] = process.argv.slice(2);
const Pomelo = require(packageDir);

const HEARTBEATS = 5;

const guard = setTimeout(() => {
  console.error(`timed out; so far: ${JSON.stringify(result)}`);
  process.exit(1);
}, 60000);

const result = {};

// One member: the client, what it was pushed (by route), and its socket's traffic counted by
// packet type (the socket is what the client's init callback hands over).
function connect(name, user) {
  return new Promise((resolve, reject) => {
    const client = new Pomelo();
    const member = {
      name,
      client,
      pushes: [],
      waiting: [],
      events: [],
      handshake: null,
      heartbeatsReceived: 0,
      heartbeatsSent: 0,
      onHeartbeat: null,
      leaving: false,
    };
    client.on("__CLIENT_ROUTE", (route, body) => {
      member.pushes.push({ route, body });
      member.waiting = member.waiting.filter((w) => !w(route, body));
    });
    for (const event of ["close", "onKick", "heartbeat timeout", "io-error", "error"]) {
      client.on(event, () => member.events.push(event));
    }
    client.on("close", () => {
      if (!member.leaving) {
        console.error(`${name}: the connection closed; so far: ${JSON.stringify(result)}`);
        process.exit(1);
      }
    });
    client.on("error", (error) => reject(new Error(`${name}: ${error}`)));
    const handshakeCallback = (u) => (member.handshake = { user: u === undefined ? null : u });
    client.init(
      { host, port: Number(port), user, handshakeCallback },
      (socket) => {
        socket.on("message", (data) => {
          if (Buffer.from(data)[0] === 3) {
            member.heartbeatsReceived += 1;
            if (member.onHeartbeat) member.onHeartbeat();
          }
        });
        const send = socket.send.bind(socket);
        socket.send = (data, ...rest) => {
          if (new Uint8Array(data)[0] === 3) member.heartbeatsSent += 1;
          return send(data, ...rest);
        };
        resolve(member);
      },
    );
  });
}

function request(member, route, body) {
  return new Promise((resolve) => member.client.request(route, body, resolve));
}

// The first push of `route` to `member` (already received, or the next one).
function pushed(member, route, match = () => true) {
  const seen = member.pushes.find((p) => p.route === route && match(p.body));
  if (seen) return Promise.resolve(seen.body);
  return new Promise((resolve) => {
    member.waiting.push((r, body) => {
      if (r !== route || !match(body)) return false;
      resolve(body);
      return true;
    });
  });
}

function event(member, name) {
  if (member.events.includes(name)) return Promise.resolve();
  return new Promise((resolve) => member.client.on(name, resolve));
}

function heartbeats(member, count) {
  const until = member.heartbeatsReceived + count;
  return new Promise((resolve) => {
    member.onHeartbeat = () => {
      if (member.heartbeatsReceived >= until) resolve();
    };
  });
}

const said = (content) => (body) => body.content === content;

async function main() {
  const ann = await connect("ann", { token: "t" });
  result.handshake = ann.handshake;
  result.annJoin = await request(ann, "room.join", { name: "ann" });

  const bob = await connect("bob", { token: "b" });
  result.bobJoin = await request(bob, "chat.room.join", { name: "bob" });
  result.annToldBobJoined = await pushed(ann, "onNewUser");

  const hi = "hi ☕ 😀";
  bob.client.notify("room.message", { content: hi });
  result.bobSaid = [await pushed(ann, "onMessage", said(hi)), await pushed(bob, "onMessage", said(hi))];
  result.annSays = await request(ann, "room.message", { content: "yo" });
  result.annSaid = [
    await pushed(ann, "onMessage", said("yo")),
    await pushed(bob, "onMessage", said("yo")),
  ];

  result.unknownRoute = await request(ann, "room.nope", {});
  result.emptyName = await request(bob, "room.join", { name: "" });
  result.notAnObject = await request(bob, "room.message", "text");

  // Idle: only heartbeats for 5 of the server's (its timeout is 2 intervals and a slack).
  const before = { ann: ann.heartbeatsSent, bob: bob.heartbeatsSent };
  await Promise.all([heartbeats(ann, HEARTBEATS), heartbeats(bob, HEARTBEATS)]);
  result.heartbeatsSent = {
    ann: ann.heartbeatsSent - before.ann,
    bob: bob.heartbeatsSent - before.bob,
  };
  result.eventsAfterIdle = { ann: [...ann.events], bob: [...bob.events] };
  result.afterIdle = await request(bob, "room.message", { content: "still here" });
  result.annSawAfterIdle = await pushed(ann, "onMessage", said("still here"));

  ann.leaving = true;
  ann.client.disconnect();
  result.bobToldAnnLeft = await pushed(bob, "onUserLeft");

  bob.leaving = true;
  console.log("kick me");
  await Promise.all([event(bob, "onKick"), event(bob, "close")]);
  result.bobEvents = bob.events.filter((e) => e !== "heartbeat timeout");
  result.pushRoutes = { ann: ann.pushes.map((p) => p.route), bob: bob.pushes.map((p) => p.route) };
  clearTimeout(guard);
  console.log(JSON.stringify(result));
  process.exit(0); // the client's heartbeat timers would keep Node running
}

main().catch((error) => {
  console.error(error && error.stack ? error.stack : error);
  process.exit(1);
});
