// pitaya-client.js against a live chat server, run in a browser page by
// tests/samples/test_js_client.py: it evaluates this classic script, then calls
// liveChecks(PitayaClient, url, report). report(step, value) records each step; after the
// "waiting for kick" step the test kicks this client from the server.

/* exported liveChecks */
async function liveChecks(PitayaClient, url, report) {
  const failure = (error) => ({ code: error.code, msg: error.msg, metadata: error.metadata });
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  report("refused", await PitayaClient.connect(url, { user: { token: "bad" } }).then(
    () => "connected", failure));
  const client = await PitayaClient.connect(url, { requestTimeout: 500, user: { token: "ok" } });
  report("handshake", { heartbeat: client.heartbeat, routes: [...client.codes.keys()].sort() });
  const events = [];
  for (const name of ["kick", "close", "error"]) {
    client.addEventListener(name, (event) => events.push([name, event.detail.reason ?? null]));
  }
  const pushes = [];
  client.on("onMessage", (body) => pushes.push(body));

  report("join", await client.request("room.join", { name: "web" }));
  for (const [route, body] of [["room.nope", {}], ["room.join", { name: "again" }]]) {
    report(route, await client.request(route, body).then(() => "resolved", failure));
  }
  const long = "ünïcode ".repeat(100); // long enough for the server to deflate it
  client.notify("room.message", { content: long });
  report("message", await client.request("room.message", { content: "short" }));
  await sleep(2500); // > 2 heartbeat intervals: only our heartbeats keep the session alive
  report("after heartbeats", await client.request("room.message", { content: "still here" }));
  report("pushes", pushes.map((p) => (p.content === long ? "long" : p.content)));
  // Last: the server handles a session's messages in order, so this one delays later ones.
  report("slow.wait", await client.request("slow.wait", {}).then(() => "resolved", failure));

  report("waiting for kick", null);
  for (let waited = 0; !client.closed && waited < 5000; waited += 20) await sleep(20);
  report("events", events);
  report("after close", await client.request("room.message", {}).then(() => "resolved", failure));
}
