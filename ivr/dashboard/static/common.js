// Shared by every dashboard page: API calls with session handling, DOM and format helpers,
// the top bar, and the live websocket with reconnects.

export class ApiError extends Error {}

export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch("/dashboard/api" + path, { credentials: "same-origin", ...options });
  } catch (err) {
    throw new ApiError("The server is not answering. Is ivr running? Retrying when you reload.");
  }
  if (response.status === 401) {
    // Session expired or the token changed: back to the login form, which says why.
    location.assign("/dashboard/login?expired=1");
    throw new ApiError("Your session has expired.");
  }
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
    throw new ApiError(`${detail} (HTTP ${response.status})`);
  }
  return response.json();
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "style") node.style.cssText = value;  // CSSOM: allowed by the CSP, unlike style attributes
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function banner(message, kind = "error") {
  const box = document.getElementById("banner");
  if (!box) return;
  box.textContent = message || "";
  box.className = message ? `banner show ${kind}` : "banner";
}

export function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "–";
  const d = new Date(epoch * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function outcomePill(outcome) {
  if (!outcome) return el("span", { class: "pill live", text: "in progress" });
  const kind = { completed: "ok", caller_hangup: "", transferred: "warn", transfer_failed: "bad", error: "bad",
    abnormal: "bad", timeout: "bad" }[outcome] ?? "";
  return el("span", { class: `pill ${kind}`, text: outcome.replaceAll("_", " ") });
}

export function confidenceBar(confidence) {
  if (typeof confidence !== "number") return null;
  const pct = Math.round(Math.max(0, Math.min(1, confidence)) * 100);
  return el("span", { class: "conf", title: `${pct}%` }, el("span", { style: `width:${pct}%` }));
}

export function callLink(callId, text) {
  return el("a", { href: `/dashboard/calls/${encodeURIComponent(callId)}` }, text ?? callId);
}

export function topBar(here) {
  const links = [["live", "/dashboard/", "Live"], ["calls", "/dashboard/calls", "Calls"], ["summary", "/dashboard/summary", "Summary"],
    ["review", "/dashboard/review", "Review"], ["try", "/dashboard/try", "Try a call"]];
  const header = el("header", { class: "top" },
    el("span", { class: "brand" }, "ivr"),
    el("nav", {}, links.map(([key, href, label]) => el("a", { href, class: key === here ? "here" : null }, label))),
    el("form", { method: "post", action: "/dashboard/logout" }, el("button", { type: "submit" }, "Log out")));
  document.body.prepend(header);
}

// The live feed: a websocket that reconnects with back-off, and after every (re)connect starts
// with a snapshot, so a missed message never leaves the page wrong for long.
export function liveFeed(onMessage, onStatus) {
  let delay = 500;
  let socket;
  function connect() {
    onStatus("wait");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/dashboard/api/live`);
    socket.onopen = () => { delay = 500; onStatus("on"); };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.kind !== "ping") onMessage(message);
    };
    socket.onclose = async (event) => {
      onStatus("off");
      if (event.code === 1008) {
        try { await api("/session"); } catch (_) { return; }  // api() sends an expired session to login
      }
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  connect();
  return () => socket && socket.close();
}

export function statusText(state) {
  return { on: "live", wait: "connecting…", off: "disconnected – retrying" }[state];
}

export function qs(params) {
  const out = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== null && value !== undefined && value !== "") out.set(key, value);
  const text = out.toString();
  return text ? `?${text}` : "";
}
