// penstock dashboard: follows /dashboard/events and renders each State.
import { follow } from "./stream.js";
import * as render from "./render.js";
import * as f from "./format.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "penstock-admin-token";

let paused = false;
// view is how the routes table is shown: sort key and filter text.
const view = { sort: "", filter: "" };
// last is the newest State, drawn the one on screen (older while paused).
let last = null;
let drawn = null;
let stop = null;

function show(st, redraw) {
  if (!redraw) last = st;
  if (paused && !redraw) return;
  drawn = st;
  const now = new Date(st.time);
  $("generation").textContent = String(st.generation);
  const r = st.reloads && st.reloads[0];
  $("last-reload").textContent = r ? `${f.ago(r.at, now)}, ${r.error ? "refused" : "applied"}` : "–";
  $("last-reload").className = r && r.error ? "bad" : "";
  const s = st.sampler;
  $("sampling").textContent = s.samples < 2 ? "warming up" : `${Math.round(s.samples)} s of history`;
  $("updated").textContent = f.clock(st.time);
  render.routes(st, $("routes"), $("routes-note"), view);
  render.pools(st, $("pools"));
  render.rollouts(st, $("rollouts"), now);
  render.limits(st, $("limits"));
  render.reloads(st, $("reloads"));
  render.fleet(st, $("fleet-section"), $("fleet-link"), $("fleet"));
  if (!redraw) document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function status(s) {
  const el = $("conn");
  const text = { live: "live", reconnecting: "reconnecting…", unauthorized: "token needed" }[s] || s;
  if (el.textContent !== text) el.textContent = text;
  el.className = "conn " + (s === "live" ? "live" : "down");
  if (s === "unauthorized") {
    $("login").hidden = false;
    if (sessionStorage.getItem(TOKEN_KEY)) $("login-error").textContent = "That token was refused.";
    $("token").focus();
  }
}

function connect() {
  if (stop) stop();
  stop = follow("/dashboard/events", sessionStorage.getItem(TOKEN_KEY), show, status);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("login").hidden = true;
  $("login-error").textContent = "";
  // Sorting: a header's button sorts by its column (figures highest first),
// pressing it again goes back to configuration order.
for (const th of $("routes").tHead.querySelectorAll("th[data-sort]")) {
  th.querySelector("button").addEventListener("click", () => {
    view.sort = view.sort === th.dataset.sort ? "" : th.dataset.sort;
    if (drawn) show(drawn, true);
  });
}
$("route-filter").addEventListener("input", (ev) => {
  view.filter = ev.target.value;
  if (drawn) show(drawn, true);
});

connect();
});

$("pause").addEventListener("click", () => {
  paused = !paused;
  $("pause").setAttribute("aria-pressed", String(paused));
  $("pause").textContent = paused ? "Resume" : "Pause";
  if (!paused && last) show(last);
});

// Sorting: a header's button sorts by its column (figures highest first),
// pressing it again goes back to configuration order.
for (const th of $("routes").tHead.querySelectorAll("th[data-sort]")) {
  th.querySelector("button").addEventListener("click", () => {
    view.sort = view.sort === th.dataset.sort ? "" : th.dataset.sort;
    if (drawn) show(drawn, true);
  });
}
$("route-filter").addEventListener("input", (ev) => {
  view.filter = ev.target.value;
  if (drawn) show(drawn, true);
});

connect();
