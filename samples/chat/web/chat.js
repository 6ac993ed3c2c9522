/**
 * The chat page: join with a name, see members arrive and leave, chat.
 * Routes (samples/chat/room.py): request room.join {name}, notify room.message {content};
 * pushes onNewUser {name}, onUserLeft {name}, onMessage {name, content}.
 * A cluster connector serves this page with <meta name="pitaya-route-prefix" content="room.">,
 * so the same routes go to a room server: room.room.join, room.room.message.
 */
import { PitayaClient } from "./pitaya-client.js";

const $ = (id) => document.getElementById(id);
const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;
const routePrefix =
  document.querySelector('meta[name="pitaya-route-prefix"]')?.getAttribute("content") ?? "";

/** @type {PitayaClient | null} */
let client = null;
let myName = "";
let members = [];

function setStatus(text) {
  $("status").textContent = text;
}

function showError(error) {
  $("error").textContent = error ? (error.code ? `${error.code}: ${error.msg}` : String(error)) : "";
}

function renderMembers() {
  $("members").replaceChildren(
    ...members.map((name) => {
      const li = document.createElement("li");
      li.textContent = name;
      if (name === myName) li.classList.add("me");
      return li;
    }),
  );
}

/** Append a line to the log: a chat message (who + text) or a system note (text only). */
function log(text, who) {
  const li = document.createElement("li");
  if (who === undefined) {
    li.className = "system";
    li.textContent = text;
  } else {
    const name = document.createElement("span");
    name.className = who === myName ? "who me" : "who";
    name.textContent = `${who}:`;
    li.append(name, " ", text);
  }
  const box = $("log");
  box.append(li);
  box.scrollTop = box.scrollHeight;
}

function showRoom(inRoom) {
  $("room").hidden = !inRoom;
  $("join-form").hidden = inRoom;
  (inRoom ? $("text") : $("name")).focus();
}

async function join(name) {
  showError(null);
  setStatus(`connecting to ${url}`);
  try {
    client = await PitayaClient.connect(url, { clientVersion: "chat-page" });
  } catch (error) {
    setStatus("not connected");
    showError(error);
    return;
  }
  const current = client;
  current.on("onNewUser", ({ name: who }) => {
    members.push(who);
    renderMembers();
    log(`${who} joined`);
  });
  current.on("onUserLeft", ({ name: who }) => {
    const at = members.indexOf(who);
    if (at >= 0) members.splice(at, 1);
    renderMembers();
    log(`${who} left`);
  });
  current.on("onMessage", ({ name: who, content }) => log(content, who));
  current.addEventListener("kick", () => showError("kicked by the server"));
  current.addEventListener("close", (event) => {
    if (client === current) client = null;
    setStatus(`disconnected (${event.detail.reason})`);
    showRoom(false);
  });
  try {
    const reply = await current.request(`${routePrefix}room.join`, { name });
    myName = name.trim();
    members = reply.members;
    renderMembers();
    $("log").replaceChildren();
    log(`you joined as ${myName}`);
    setStatus(`connected to ${url} as ${myName}`);
    showRoom(true);
  } catch (error) {
    showError(error);
    current.close();
  }
}

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (!client) join($("name").value);
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  if (!text || !client) return;
  try {
    client.notify(`${routePrefix}room.message`, { content: text });
    $("text").value = "";
  } catch (error) {
    showError(error);
  }
});

$("leave").addEventListener("click", () => client?.close());
