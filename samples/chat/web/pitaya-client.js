/**
 * A dependency-free Pitaya/pomelo client for browsers (and Node 20+ with a WebSocket).
 *
 * Wire format (see the project's DESIGN and transport/packet.py, transport/message.py):
 * packet = type:u8 | length:u24 big-endian | body, one packet per WebSocket frame;
 * message = flag:u8 | [id varint] | [route] | data, flag = type << 1 | 0x01 (route is a
 * u16 dictionary code) | 0x10 (data is zlib-deflated) | 0x20 (error response).
 *
 * @example
 *   import { PitayaClient } from "./pitaya-client.js";
 *   const client = await PitayaClient.connect("ws://127.0.0.1:3251/");
 *   client.on("onMessage", (msg) => console.log(msg.name, msg.content));
 *   client.addEventListener("close", (e) => console.log("closed:", e.detail.reason));
 *   const reply = await client.request("room.join", { name: "ann" });
 *   client.notify("room.message", { content: "hello" });
 *
 * @module pitaya-client
 */

export const LIB_VERSION = "0.1.0";

/** Packet types (first byte of every packet). */
export const PacketType = Object.freeze({
  HANDSHAKE: 1, HANDSHAKE_ACK: 2, HEARTBEAT: 3, DATA: 4, KICK: 5,
});

/** Message types (bits 1..3 of the flag byte). */
export const MessageType = Object.freeze({ REQUEST: 0, NOTIFY: 1, RESPONSE: 2, PUSH: 3 });

const FLAG_ROUTE_COMPRESSED = 0x01;
const FLAG_DATA_COMPRESSED = 0x10;
const FLAG_ERROR = 0x20;
const MAX_BODY_LENGTH = 0xffffff;
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * A failed request, or a protocol problem: Pitaya's error body plus an Error's stack.
 * Client-side codes: PIT-504 (no response in time), PIT-498 (connection closed first).
 */
export class PitayaError extends Error {
  /**
   * @param {string} code  e.g. "PIT-404"
   * @param {string} [msg]
   * @param {Object<string, string>} [metadata]
   */
  constructor(code, msg = "", metadata = {}) {
    super(msg ? `${code}: ${msg}` : code);
    this.name = "PitayaError";
    this.code = code;
    this.msg = msg;
    this.metadata = metadata;
  }
}

// -- codecs (pure functions, exported for tests) ------------------------------------------

/**
 * Frame a body as one packet.
 * @param {number} type  a PacketType
 * @param {Uint8Array} [body]
 * @returns {Uint8Array}
 */
export function encodePacket(type, body = new Uint8Array(0)) {
  if (body.length > MAX_BODY_LENGTH) throw new PitayaError("PIT-400", "packet body too large");
  const out = new Uint8Array(4 + body.length);
  out[0] = type;
  out[1] = (body.length >> 16) & 0xff;
  out[2] = (body.length >> 8) & 0xff;
  out[3] = body.length & 0xff;
  out.set(body, 4);
  return out;
}

/**
 * Split bytes into whole packets (a WebSocket frame normally holds exactly one).
 * @param {Uint8Array} bytes
 * @returns {{type: number, body: Uint8Array}[]}
 * @throws {PitayaError} on a truncated packet or an unknown type
 */
export function decodePackets(bytes) {
  const packets = [];
  let offset = 0;
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new PitayaError("PIT-400", "truncated packet header");
    const type = bytes[offset];
    if (type < PacketType.HANDSHAKE || type > PacketType.KICK) {
      throw new PitayaError("PIT-400", `unknown packet type ${type}`);
    }
    const length = (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3];
    const end = offset + 4 + length;
    if (end > bytes.length) throw new PitayaError("PIT-400", "truncated packet body");
    packets.push({ type, body: bytes.subarray(offset + 4, end) });
    offset = end;
  }
  return packets;
}

/**
 * Base-128 varint, least significant group first (ids up to 2**53 - 1).
 * @param {number} value
 * @returns {number[]}
 */
export function encodeVarint(value) {
  const out = [];
  do {
    let group = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) group |= 0x80;
    out.push(group);
  } while (value > 0);
  return out;
}

/**
 * Encode a message (the body of a DATA packet).
 * @param {{type: number, id?: number, route?: string, data?: Uint8Array, error?: boolean}} msg
 * @param {Map<string, number>} [codes]  route -> dictionary code, from the handshake
 * @returns {Uint8Array}
 */
export function encodeMessage(msg, codes = new Map()) {
  const data = msg.data ?? new Uint8Array(0);
  const head = [(msg.type << 1) | (msg.error ? FLAG_ERROR : 0)];
  if (msg.type === MessageType.REQUEST || msg.type === MessageType.RESPONSE) {
    head.push(...encodeVarint(msg.id ?? 0));
  }
  if (msg.type !== MessageType.RESPONSE) {
    const code = codes.get(msg.route);
    if (code !== undefined) {
      head[0] |= FLAG_ROUTE_COMPRESSED;
      head.push(code >> 8, code & 0xff);
    } else {
      const route = utf8Encoder.encode(msg.route ?? "");
      if (route.length === 0 || route.length > 255) {
        throw new PitayaError("PIT-400", `route must be 1..255 bytes: ${msg.route}`);
      }
      head.push(route.length, ...route);
    }
  }
  const out = new Uint8Array(head.length + data.length);
  out.set(head);
  out.set(data, head.length);
  return out;
}

/**
 * Decode a message. Deflated data (flag 0x10) is returned as is, with `deflated: true`.
 * @param {Uint8Array} bytes
 * @param {Map<number, string>} [routes]  dictionary code -> route, from the handshake
 * @returns {{type: number, id: number, route: string, data: Uint8Array, error: boolean,
 *            deflated: boolean}}
 */
export function decodeMessage(bytes, routes = new Map()) {
  if (bytes.length === 0) throw new PitayaError("PIT-400", "empty message");
  const flag = bytes[0];
  const type = (flag >> 1) & 0x07;
  if (type > MessageType.PUSH) throw new PitayaError("PIT-400", `unknown message type ${type}`);
  let offset = 1;
  let id = 0;
  if (type === MessageType.REQUEST || type === MessageType.RESPONSE) {
    let scale = 1;
    for (;;) {
      if (offset >= bytes.length) throw new PitayaError("PIT-400", "truncated message id");
      const byte = bytes[offset++];
      id += (byte & 0x7f) * scale;
      scale *= 128;
      if (byte < 0x80) break;
    }
  }
  let route = "";
  if (type !== MessageType.RESPONSE) {
    if (flag & FLAG_ROUTE_COMPRESSED) {
      if (offset + 2 > bytes.length) throw new PitayaError("PIT-400", "truncated route code");
      const code = (bytes[offset] << 8) | bytes[offset + 1];
      offset += 2;
      route = routes.get(code);
      if (route === undefined) throw new PitayaError("PIT-400", `unknown route code ${code}`);
    } else {
      if (offset >= bytes.length) throw new PitayaError("PIT-400", "missing route length");
      const length = bytes[offset++];
      if (offset + length > bytes.length) throw new PitayaError("PIT-400", "truncated route");
      route = utf8Decoder.decode(bytes.subarray(offset, offset + length));
      offset += length;
    }
  }
  return {
    type, id, route,
    data: bytes.subarray(offset),
    error: (flag & FLAG_ERROR) !== 0,
    deflated: (flag & FLAG_DATA_COMPRESSED) !== 0,
  };
}

/**
 * Inflate zlib data (RFC 1950) with the platform's DecompressionStream.
 * @param {Uint8Array} data
 * @returns {Promise<Uint8Array>}
 */
export async function inflate(data) {
  if (typeof DecompressionStream === "undefined") {
    throw new PitayaError("PIT-500", "compressed data, but no DecompressionStream here");
  }
  const stream = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** @param {unknown} value @returns {Uint8Array} */
export const encodeJson = (value) => utf8Encoder.encode(JSON.stringify(value ?? {}));

/** @param {Uint8Array} data @returns {any} null for empty data */
export const decodeJson = (data) => (data.length ? JSON.parse(utf8Decoder.decode(data)) : null);

/**
 * The handshake packet a web client sends first.
 * @param {string} clientVersion  the game's version (handshake validators may check it)
 * @param {object} user  application data, stored in the server's session
 * @returns {Uint8Array}
 */
export function encodeHandshake(clientVersion, user) {
  const sys = {
    type: "js-websocket", version: "0.0.1", platform: "web",
    libVersion: LIB_VERSION, clientVersion,
  };
  return encodePacket(PacketType.HANDSHAKE, encodeJson({ sys, user }));
}

/** The reason a kick's body carries (`{"reason": ...}`, as our servers and pomelo's send it);
 * "" when it has none (Go Pitaya sends an empty body) or is no such JSON. */
function kickReason(body) {
  try {
    const reason = decodeJson(body)?.reason;
    return typeof reason === "string" ? reason : "";
  } catch {
    return "";
  }
}

const looksZlib = (b) => b.length > 2 && (b[0] & 0x0f) === 8 && ((b[0] << 8) | b[1]) % 31 === 0;

// -- the client ---------------------------------------------------------------------------

/**
 * A connected client. Events (an EventTarget; read `event.detail`):
 * `kick` ({reason}: the server's, "" if it gave none; `close` follows), `close` ({reason}),
 * `error` ({error}).
 */
export class PitayaClient extends EventTarget {
  /**
   * Open a WebSocket, do the handshake, resolve when the server accepted it.
   * @param {string} url  e.g. "ws://127.0.0.1:3251/"
   * @param {{user?: object, clientVersion?: string, requestTimeout?: number,
   *          handshakeTimeout?: number}} [options]  timeouts in ms (default 5000, 10000)
   * @returns {Promise<PitayaClient>}
   */
  static connect(url, options = {}) {
    const client = new PitayaClient(options);
    return client._open(url).then(() => client);
  }

  /** Use {@link PitayaClient.connect}. */
  constructor({ user = {}, clientVersion = "", requestTimeout = 5000, handshakeTimeout = 10000 } = {}) {
    super();
    this.options = { user, clientVersion, requestTimeout, handshakeTimeout };
    /** Seconds between heartbeats, as announced by the server (0: none). */
    this.heartbeat = 0;
    /** route -> code and code -> route, from the handshake's route dictionary. */
    this.codes = new Map();
    this.routes = new Map();
    this.closed = false;
    this._ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._listeners = new Map(); // push route -> Set of callbacks
    this._inbox = Promise.resolve(); // keeps messages in order while some are inflated
    this._timers = [];
    this._lastReceived = 0;
    this._handshakeDone = null; // {resolve, reject} of connect()'s promise
  }

  /**
   * Send a request; resolves with the decoded response body.
   * @param {string} route  e.g. "room.join"
   * @param {unknown} [body]
   * @returns {Promise<any>} rejects with a {@link PitayaError} ({code, msg, metadata})
   */
  request(route, body) {
    if (this.closed) return Promise.reject(new PitayaError("PIT-498", "connection closed"));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new PitayaError("PIT-504", `no response to ${route} in time`));
      }, this.options.requestTimeout);
      this._pending.set(id, { resolve, reject, timer });
      try {
        this._sendMessage({ type: MessageType.REQUEST, id, route, data: encodeJson(body) });
      } catch (error) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(error);
      }
    });
  }

  /**
   * Send a notify (no response).
   * @param {string} route
   * @param {unknown} [body]
   */
  notify(route, body) {
    if (this.closed) throw new PitayaError("PIT-498", "connection closed");
    this._sendMessage({ type: MessageType.NOTIFY, route, data: encodeJson(body) });
  }

  /**
   * Listen to pushes on `route`.
   * @param {string} route  e.g. "onMessage"
   * @param {(body: any) => void} callback
   * @returns {() => void} call it to stop listening
   */
  on(route, callback) {
    if (!this._listeners.has(route)) this._listeners.set(route, new Set());
    this._listeners.get(route).add(callback);
    return () => this._listeners.get(route)?.delete(callback);
  }

  /** Close the connection; pending requests are rejected with PIT-498. */
  close() {
    this._shutdown("closed by the client");
  }

  // -- internals --------------------------------------------------------------------------

  _open(url) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      this._ws = ws;
      this._handshakeDone = { resolve, reject };
      this._timers.push(setTimeout(
        () => this._fail(new PitayaError("PIT-504", "handshake timed out")),
        this.options.handshakeTimeout,
      ));
      ws.onopen = () => {
        this._send(encodeHandshake(this.options.clientVersion, this.options.user));
      };
      ws.onmessage = (event) => this._onFrame(new Uint8Array(event.data));
      ws.onerror = () => this._fail(new PitayaError("PIT-500", `WebSocket error on ${url}`));
      ws.onclose = (event) => {
        const reason = event.code === 1000 ? "closed by the server" : `WebSocket closed (${event.code})`;
        this._later(() => this._shutdown(reason)); // after the messages that came before it
      };
    });
  }

  _onFrame(bytes) {
    this._lastReceived = Date.now(); // any packet proves the server is alive
    let packets;
    try {
      packets = decodePackets(bytes);
    } catch (error) {
      this._fail(error);
      return;
    }
    for (const { type, body } of packets) {
      if (type === PacketType.HANDSHAKE) {
        this._later(() => this._onHandshake(body).catch((e) => this._fail(e)));
      } else if (type === PacketType.DATA) {
        this._later(() => this._onData(body));
      } else if (type === PacketType.KICK) {
        this._later(() => {
          this._emit("kick", { reason: kickReason(body) });
          this._shutdown("kicked by the server");
        });
      } // HEARTBEAT: nothing more to do
    }
  }

  /** Run `step` after every earlier one: inflating data is async, arrival order must hold. */
  _later(step) {
    this._inbox = this._inbox.then(step).catch((error) => this._emit("error", { error }));
  }

  async _onHandshake(body) {
    const answer = decodeJson(looksZlib(body) ? await inflate(body) : body);
    if (answer.code !== 200) {
      throw new PitayaError(String(answer.code), answer.msg || "handshake rejected");
    }
    const sys = answer.sys ?? {};
    if ((sys.serializer ?? "json") !== "json") {
      throw new PitayaError("PIT-500", `serializer ${sys.serializer} is not supported (json only)`);
    }
    for (const [route, code] of Object.entries(sys.dict ?? {})) {
      this.codes.set(route, code);
      this.routes.set(code, route);
    }
    this.heartbeat = Number(sys.heartbeat) || 0;
    clearTimeout(this._timers.pop()); // the handshake timeout, the only timer so far
    this._send(encodePacket(PacketType.HANDSHAKE_ACK));
    if (this.heartbeat > 0) this._startHeartbeats(this.heartbeat * 1000);
    this._handshakeDone.resolve();
  }

  _startHeartbeats(interval) {
    this._timers.push(setInterval(() => this._send(encodePacket(PacketType.HEARTBEAT)), interval));
    // Silent for twice the interval: the server (or the network) is gone.
    this._timers.push(setInterval(() => {
      if (Date.now() - this._lastReceived > 2 * interval) {
        this._fail(new PitayaError("PIT-504", "heartbeat timeout"));
      }
    }, Math.min(interval, 1000)));
  }

  async _onData(body) {
    const msg = decodeMessage(body, this.routes);
    const data = msg.deflated ? await inflate(msg.data) : msg.data;
    if (msg.type === MessageType.RESPONSE) {
      const pending = this._pending.get(msg.id);
      if (!pending) return; // timed out already
      this._pending.delete(msg.id);
      clearTimeout(pending.timer);
      if (msg.error) {
        let err;
        try {
          err = decodeJson(data) ?? {};
        } catch {
          err = { code: "PIT-000", msg: new TextDecoder().decode(data) };
        }
        pending.reject(new PitayaError(err.code ?? "PIT-000", err.msg ?? "", err.metadata ?? {}));
      } else {
        pending.resolve(decodeJson(data));
      }
    } else if (msg.type === MessageType.PUSH) {
      const body = decodeJson(data);
      for (const callback of this._listeners.get(msg.route) ?? []) {
        try {
          callback(body);
        } catch (error) {
          this._emit("error", { error });
        }
      }
    }
  }

  _sendMessage(msg) {
    this._send(encodePacket(PacketType.DATA, encodeMessage(msg, this.codes)));
  }

  _send(bytes) {
    if (!this.closed && this._ws.readyState === WebSocket.OPEN) this._ws.send(bytes);
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  _fail(error) {
    if (this.closed) return;
    this._emit("error", { error });
    this._handshakeDone.reject(error);
    this._shutdown(error.message);
  }

  _shutdown(reason) {
    if (this.closed) return;
    this.closed = true;
    this._timers.forEach((t) => clearInterval(t)); // clears timeouts too
    this._timers = [];
    for (const { reject, timer } of this._pending.values()) {
      clearTimeout(timer);
      reject(new PitayaError("PIT-498", `connection closed: ${reason}`));
    }
    this._pending.clear();
    this._handshakeDone.reject(new PitayaError("PIT-498", `connection closed: ${reason}`));
    if (this._ws.readyState <= WebSocket.OPEN) this._ws.close(1000);
    this._emit("close", { reason });
  }
}
