// The call list: filters live in the page's URL (shareable, back button works), results paged.
import { api, banner, callLink, el, fmtDuration, fmtTime, outcomePill, qs, topBar } from "./common.js";

topBar("calls");
const form = document.getElementById("filters");
const list = document.getElementById("list");
const PAGE = 50;
const FIELDS = ["since", "until", "flow", "outcome", "handoff_reason", "caller", "q"];

function toLocalInput(epoch) {
  const d = new Date(epoch * 1000);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function readUrl() {
  const params = new URLSearchParams(location.search);
  const state = { offset: Number(params.get("offset") || 0) };
  for (const f of FIELDS) state[f] = params.get(f) || "";
  return state;
}

function fillForm(state) {
  for (const f of FIELDS) {
    const input = form.elements[f];
    if (f === "since" || f === "until") input.value = state[f] ? toLocalInput(Number(state[f])) : "";
    else input.value = state[f];
  }
}

function formState() {
  const state = { offset: 0 };
  for (const f of FIELDS) {
    const value = form.elements[f].value.trim();
    // datetime-local is the operator's local time; the API takes epoch seconds.
    state[f] = (f === "since" || f === "until") && value ? String(Math.floor(new Date(value).getTime() / 1000)) : value;
  }
  return state;
}

async function loadOptions() {
  try {
    const options = await api("/options");
    const add = (select, values) => { for (const v of values) if (![...select.options].some((o) => o.value === v)) select.append(el("option", { value: v }, v.replaceAll("_", " "))); };
    add(form.elements.flow, options.flows);
    add(form.elements.outcome, options.outcomes);
    document.getElementById("reasons").replaceChildren(...options.handoff_reasons.map((r) => el("option", { value: r })));
    fillForm(readUrl());  // selects now have their options
  } catch (err) {
    banner(err.message);
  }
}

async function load() {
  const state = readUrl();
  fillForm(state);
  list.replaceChildren(el("div", { class: "panel empty" }, "Loading…"));
  let page;
  try {
    page = await api("/calls" + qs({ ...state, limit: PAGE }));
    banner("");
  } catch (err) {
    banner(err.message);
    list.replaceChildren(el("div", { class: "panel empty" }, "Could not load the call list."));
    return;
  }
  const filtered = FIELDS.some((f) => state[f]);
  if (!page.calls.length) {
    list.replaceChildren(el("div", { class: "panel empty" }, filtered ? "No calls match these filters." : "No calls yet. Calls appear here once they are answered."));
  } else {
    list.replaceChildren(el("table", { id: "calls-table" },
      el("thead", {}, el("tr", {}, ["Started", "Call", "Caller", "Flow", "Duration", "Outcome", "Reason", "Last node"].map((h) => el("th", {}, h)))),
      el("tbody", {}, page.calls.map((c) => el("tr", { "data-call": c.call_id },
        el("td", {}, fmtTime(c.started_at)),
        el("td", { class: "mono" }, callLink(c.call_id, c.call_id.slice(0, 16) + "…")),
        el("td", {}, c.channel === "browser" ? el("span", { class: "pill", title: "a test call from the dashboard" }, "browser") : (c.caller || "–")),
        el("td", {}, c.flow),
        el("td", { class: "num" }, c.ended_at ? fmtDuration(c.duration) : "live"),
        el("td", {}, outcomePill(c.outcome)),
        el("td", { class: "small" }, c.reason || "–"),
        el("td", {}, c.last_node || "–"))))));
  }
  const first = page.total ? page.offset + 1 : 0;
  document.getElementById("range").textContent = `${first}–${page.offset + page.calls.length} of ${page.total} call${page.total === 1 ? "" : "s"}`;
  document.getElementById("prev").disabled = page.offset === 0;
  document.getElementById("next").disabled = page.offset + page.calls.length >= page.total;
}

function go(state) {
  history.pushState(null, "", location.pathname + qs(state));
  load();
}

form.addEventListener("submit", (event) => { event.preventDefault(); go(formState()); });
document.getElementById("reset").addEventListener("click", () => { form.reset(); go({}); });
document.getElementById("prev").addEventListener("click", () => { const s = readUrl(); go({ ...s, offset: Math.max(0, s.offset - PAGE) }); });
document.getElementById("next").addEventListener("click", () => { const s = readUrl(); go({ ...s, offset: s.offset + PAGE }); });
window.addEventListener("popstate", load);
loadOptions();
load();
