// Live calls: a snapshot, then every change pushed over the websocket. Durations tick locally.
import { banner, callLink, el, fmtDuration, fmtTime, liveFeed, outcomePill, statusText, topBar, api } from "./common.js";

topBar("live");
const calls = new Map();   // call_id -> live state
const ended = [];          // calls that ended while this page was open, newest first
const liveBox = document.getElementById("live");
const endedBox = document.getElementById("ended");
const status = document.getElementById("status");
const ENDED_KEPT = 20;

function row(call) {
  const intent = call.intent ? el("span", {}, call.intent, " ",
    el("span", { class: "muted small" }, typeof call.confidence === "number" ? `${Math.round(call.confidence * 100)}%` : "")) : "–";
  return el("tr", { "data-call": call.call_id, class: call._changed ? "flash" : null },
    el("td", {}, callLink(call.call_id, call.call_id.slice(0, 14) + "…"), el("div", { class: "muted small" }, call.caller || "unknown caller")),
    el("td", {}, call.flow || "–"),
    el("td", { class: "node" }, call.node ? el("span", { class: "pill live" }, call.node) : "–"),
    el("td", { class: "num duration", "data-started": call.started_at }, fmtDuration(Date.now() / 1000 - call.started_at)),
    el("td", { class: "transcript" }, call.last_transcript ? `“${call.last_transcript}”` : el("span", { class: "muted" }, "–")),
    el("td", { class: "small" }, call.last_prompt || el("span", { class: "muted" }, "–")),
    el("td", {}, intent));
}

function render() {
  liveBox.replaceChildren();
  if (!calls.size) {
    liveBox.append(el("div", { class: "panel empty" }, "No calls in progress. New calls appear here the moment they are answered."));
  } else {
    liveBox.append(el("table", { id: "live-table" },
      el("thead", {}, el("tr", {}, ["Call", "Flow", "Node", "Duration", "Caller said", "Bot said", "Intent"].map((h, i) =>
        el("th", { class: i === 3 ? "num" : null }, h)))),
      el("tbody", {}, [...calls.values()].sort((a, b) => a.started_at - b.started_at).map(row))));
  }
  for (const call of calls.values()) call._changed = false;
  endedBox.replaceChildren();
  if (!ended.length) {
    endedBox.append(el("div", { class: "panel empty small" }, "Calls that end while this page is open are listed here."));
    return;
  }
  endedBox.append(el("table", { id: "ended-table" },
    el("thead", {}, el("tr", {}, ["Call", "Flow", "Ended", "Duration", "Outcome", "Last node"].map((h) => el("th", {}, h)))),
    el("tbody", {}, ended.map((c) => el("tr", { "data-call": c.call_id },
      el("td", {}, callLink(c.call_id, c.call_id.slice(0, 14) + "…"), el("div", { class: "muted small" }, c.caller || "")),
      el("td", {}, c.flow || "–"), el("td", {}, fmtTime(c.ended_at)), el("td", {}, fmtDuration(c.ended_at - c.started_at)),
      el("td", {}, outcomePill(c.outcome)), el("td", {}, c.node || "–"))))));
}

function onMessage(message) {
  if (message.kind === "snapshot") {
    calls.clear();
    for (const call of message.calls) calls.set(call.call_id, call);
  } else if (message.kind === "resync") {
    return;  // the socket closes and reconnects with a fresh snapshot
  } else if (message.kind === "call_end") {
    const last = calls.get(message.call_id);
    calls.delete(message.call_id);
    if (last) {
      ended.unshift({ ...last, outcome: message.outcome, ended_at: message.ts });
      ended.length = Math.min(ended.length, ENDED_KEPT);
    }
  } else if (message.state) {
    const before = calls.get(message.call_id);
    const next = { ...message.state, _changed: !before || before.node !== message.state.node };
    calls.set(message.call_id, next);
  }
  render();
}

function onStatus(state) {
  status.className = `status ${state}`;
  status.textContent = statusText(state);
  banner(state === "off" ? "Lost the live connection to the server; reconnecting…" : "");
}

setInterval(() => {
  for (const cell of document.querySelectorAll("td.duration")) cell.textContent = fmtDuration(Date.now() / 1000 - Number(cell.dataset.started));
}, 1000);

// A quick check first, so an expired session goes to login instead of a silent socket refusal.
api("/session").then(() => liveFeed(onMessage, onStatus)).catch((err) => banner(err.message));
render();
