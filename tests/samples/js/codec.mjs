// Runs pitaya-client.js's codecs on cases from tests/samples/test_js_client.py (stdin, JSON)
// and prints what they produced (stdout, JSON), so Python can compare with its own codecs.
import {
  MessageType, PacketType, decodeJson, decodeMessage, decodePackets, encodeHandshake,
  encodeJson, encodeMessage, encodePacket, inflate,
} from "../../../samples/chat/web/pitaya-client.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => new Uint8Array(Buffer.from(text, "hex"));
const codes = (dict) => new Map(Object.entries(dict));
const routes = (dict) => new Map(Object.entries(dict).map(([route, code]) => [code, route]));

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { encode, decode, malformed, dict } = JSON.parse(input);

const encoded = encode.map((c) =>
  hex(encodePacket(PacketType.DATA, encodeMessage({ ...c, data: encodeJson(c.body) }, codes(dict)))),
);

const decoded = [];
for (const packet of decodePackets(fromHex(decode.join("")))) {
  const msg = decodeMessage(packet.body, routes(dict));
  const data = msg.deflated ? await inflate(msg.data) : msg.data;
  decoded.push({ type: msg.type, id: msg.id, route: msg.route, error: msg.error,
                 deflated: msg.deflated, body: decodeJson(data) });
}

const rejected = malformed.map((text) => {
  try {
    decodePackets(fromHex(text)).forEach((p) => decodeMessage(p.body, routes(dict)));
    return null;
  } catch (error) {
    return error.code ?? String(error);
  }
});

const handshake = hex(encodeHandshake("1.2.3", { token: "t" }));
console.log(JSON.stringify({ encoded, decoded, rejected, handshake,
                             types: { ...MessageType } }));
