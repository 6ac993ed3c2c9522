// Runs pitaya-client.js's codecs (and, when given, pomelo-protocol's) on byte-level cases from
// tests/samples/test_js_codec_vectors.py: JSON on stdin, JSON on stdout, all bytes as hex.
//
// Input:  { dict: {route: code}, pomelo?: "<path of an installed pomelo-protocol>",
//           encodeMessages: [{type, id, route, data, error}], decodeMessages: [hex],
//           encodePackets: [{type, body}], decodePackets: [hex],
//           pomeloCases: [{type, id, route, data, gzip}] }
// Output: the same keys, one result per case; a rejected case gives {rejected: code}. Each
// pomelo case gives {theirs, ours, theyRead, weRead}: the DATA packet pomelo-protocol encodes,
// the one we encode, pomelo-protocol's reading of ours and our reading of theirs.
import { createRequire } from "node:module";
import {
  decodeMessage, decodePackets, encodeMessage, encodePacket, inflate,
} from "../../../samples/chat/web/pitaya-client.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const request = JSON.parse(input);
const dict = request.dict ?? {};
const codes = new Map(Object.entries(dict));
const routes = new Map(Object.entries(dict).map(([route, code]) => [code, route]));

const rejected = (error) => ({ rejected: error.code ?? String(error) });

const output = {};

output.encodeMessages = (request.encodeMessages ?? []).map((m) => {
  try {
    return hex(encodeMessage({ ...m, data: fromHex(m.data ?? "") }, codes));
  } catch (error) {
    return rejected(error);
  }
});

output.decodeMessages = [];
for (const text of request.decodeMessages ?? []) {
  try {
    const m = decodeMessage(fromHex(text), routes);
    output.decodeMessages.push({
      type: m.type, id: m.id, route: m.route, error: m.error, deflated: m.deflated,
      data: hex(m.data), inflated: m.deflated ? hex(await inflate(m.data)) : null,
    });
  } catch (error) {
    output.decodeMessages.push(rejected(error));
  }
}

output.encodePackets = (request.encodePackets ?? []).map((p) => {
  try {
    return hex(encodePacket(p.type, fromHex(p.body)));
  } catch (error) {
    return rejected(error);
  }
});

output.decodePackets = (request.decodePackets ?? []).map((text) => {
  try {
    return decodePackets(fromHex(text)).map((p) => ({ type: p.type, body: hex(p.body) }));
  } catch (error) {
    return rejected(error);
  }
});

if (request.pomelo) {
  // pomelo-protocol is CommonJS; its Message.encode(id, type, compressRoute, route, body, gzip)
  // takes a numeric route when compressRoute is set, the route string otherwise.
  const { Package, Message } = createRequire(import.meta.url)(request.pomelo);
  const pomeloRead = (bytes) => {
    const packet = Package.decode(Buffer.from(bytes));
    const m = Message.decode(packet.body ?? Buffer.alloc(0));
    return { packetType: packet.type, type: m.type, id: m.id,
             route: (m.compressRoute ? routes.get(m.route) : m.route) ?? "",
             compressRoute: m.compressRoute, compressGzip: m.compressGzip, data: hex(m.body) };
  };
  output.pomelo = [];
  for (const m of request.pomeloCases ?? []) {
    const code = codes.get(m.route);
    const compress = m.type !== 2 && code !== undefined ? 1 : 0;
    const body = Buffer.from(m.data ?? "", "hex");
    const theirs = Package.encode(
      Package.TYPE_DATA,
      Message.encode(m.id ?? 0, m.type, compress, compress ? code : m.route, body, m.gzip ?? 0),
    );
    const result = { theirs: hex(theirs) };
    if (!m.gzip) {  // our client never deflates what it sends
      const ours = encodePacket(4, encodeMessage({ ...m, data: fromHex(m.data ?? "") }, codes));
      result.ours = hex(ours);
      result.theyRead = pomeloRead(ours);
    }
    const [packet] = decodePackets(new Uint8Array(theirs));
    const read = decodeMessage(packet.body, routes);
    result.weRead = { packetType: packet.type, type: read.type, id: read.id, route: read.route,
                      error: read.error, deflated: read.deflated,
                      data: hex(read.deflated ? await inflate(read.data) : read.data) };
    output.pomelo.push(result);
  }
}

console.log(JSON.stringify(output));
