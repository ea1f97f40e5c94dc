// Rendering of each section from one dashboard State. Every value from the
// gateway goes in as text (textContent), never as markup.
import * as f from "./format.js";

// h creates an element: h("td", {class: "num"}, "12", child...).
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("data-")) el.setAttribute(k, v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) {
    if (k === undefined || k === null) continue;
    el.append(typeof k === "string" || typeof k === "number" ? String(k) : k);
  }
  return el;
}

function fill(tbody, rows, cols, empty) {
  if (!rows.length) {
    rows = [h("tr", {}, h("td", { colspan: cols, class: "empty" }, empty))];
  }
  tbody.replaceChildren(...rows);
}

function errClass(x) {
  if (x >= 0.05) return "bad";
  if (x >= 0.01) return "warn";
  return null;
}

// routeOrder sorts routes by view.sort (a State field; names ascending,
// figures descending, absent figures last) and keeps those matching
// view.filter; without a sort, configuration order.
function routeOrder(list, view) {
  const q = (view.filter || "").trim().toLowerCase();
  let out = q ? list.filter((r) => [r.name, r.match, r.target].some((s) => s.toLowerCase().includes(q))) : list.slice();
  const k = view.sort;
  if (k === "name") out.sort((a, b) => a.name.localeCompare(b.name));
  else if (k) out.sort((a, b) => (b[k] ?? -1) - (a[k] ?? -1));
  return out;
}

export function routes(st, table, note, view) {
  const shown = routeOrder(st.routes, view || {});
  const rows = shown.map((r) => {
    const idle = !r.requests && !r.active;
    const cls = [idle ? "idle" : "", r.err_5xx >= 0.05 ? "is-bad" : ""].join(" ").trim() || null;
    return h("tr", { "data-route": r.name, class: cls },
      h("th", { scope: "row" }, r.name),
      h("td", { title: r.match }, r.match),
      h("td", {}, r.target),
      h("td", { class: "num", "data-col": "active" }, r.tracked ? String(r.active) : "–"),
      h("td", { class: "num", "data-col": "rate", "data-value": r.rate }, r.tracked ? f.rate(r.rate) : "untracked"),
      h("td", { class: ["num", errClass(r.err_5xx)].filter(Boolean).join(" "), "data-col": "err5xx" }, f.ratio(r.err_5xx)),
      h("td", { class: ["num", r.err_4xx >= 0.05 ? "warn" : null].filter(Boolean).join(" "), "data-col": "err4xx" }, f.ratio(r.err_4xx)),
      h("td", { class: "num", "data-col": "p50" }, f.seconds(r.p50)),
      h("td", { class: "num", "data-col": "p99" }, f.seconds(r.p99, r.p99_over)),
      h("td", { class: "num", "data-col": "p99_5m" }, f.seconds(r.p99_5m)),
      h("td", {}, f.spark(r.spark, r.spark_5xx, f.sparkLabel(`${r.name} requests`, r.spark))),
    );
  });
  fill(table.tBodies[0], rows, 11, st.routes.length ? "no route matches the filter" : "no routes");
  for (const th of table.tHead.querySelectorAll("th[data-sort]")) {
    if (th.dataset.sort === (view || {}).sort) th.setAttribute("aria-sort", th.dataset.sort === "name" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
  const s = st.sampler;
  const parts = [`rates over ${s.rate_window_s} s, errors and percentiles over ${s.stat_window_s} s`];
  if (shown.length !== st.routes.length) parts.push(`${shown.length} of ${st.routes.length} shown`);
  if (s.untracked_routes) parts.push(`${s.untracked_routes} routes beyond the first 100 without figures`);
  note.textContent = "(" + parts.join("; ") + ")";
}

function statusClass(s) {
  if (s === "up") return "ok";
  if (s === "breaker half open") return "warn";
  return "bad";
}

export function pools(st, box) {
  const out = st.pools.map((p) => {
    const rows = p.endpoints.map((e) => {
      let status = e.status;
      if (e.ejected && e.eject_reason) status += ` (${e.eject_reason})`;
      const sc = statusClass(e.status);
      return h("tr", { "data-endpoint": e.address, class: sc === "bad" ? "is-bad" : sc === "warn" ? "is-warn" : null },
        h("th", { scope: "row", class: "mono" }, e.address),
        h("td", { "data-col": "status" }, h("span", { class: "pill " + sc }, status)),
        h("td", { "data-col": "breaker" }, e.breaker || "–"),
        h("td", { "data-col": "check" }, e.check || "–"),
        h("td", { class: "num" }, String(e.weight)),
        h("td", { class: "num" }, String(e.inflight)),
        h("td", { class: "num", "data-col": "rate" }, f.rate(e.rate)),
        h("td", { class: ["num", errClass(e.fail_ratio)].filter(Boolean).join(" ") }, f.ratio(e.fail_ratio)),
        h("td", {}, f.spark(e.spark, null, f.sparkLabel(`${e.address} attempts`, e.spark))),
      );
    });
    const id = "pool-" + p.name.replace(/[^A-Za-z0-9_-]/g, "_");
    const table = h("table", { "aria-labelledby": id },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "endpoint"),
        h("th", { scope: "col" }, "status"),
        h("th", { scope: "col" }, "breaker"),
        h("th", { scope: "col" }, "check"),
        h("th", { scope: "col", class: "num" }, "weight"),
        h("th", { scope: "col", class: "num", title: "requests in flight" }, "in flight"),
        h("th", { scope: "col", class: "num", title: "attempts per second, last 10 s" }, "att/s"),
        h("th", { scope: "col", class: "num", title: "attempts without a usable answer, last 10 s" }, "failed"),
        h("th", { scope: "col" }, "last 5 min"),
      )),
      h("tbody", {}, ...rows));
    const notes = [p.balancing];
    if (p.breaker) notes.push("pool breaker " + p.breaker);
    return h("div", { class: "pool", "data-pool": p.name },
      h("h3", { id }, p.name, h("span", { class: "note" }, notes.join(", "))),
      h("div", { class: "scroll", tabindex: "0", role: "region", "aria-labelledby": id }, table));
  });
  box.replaceChildren(...(out.length ? out : [h("p", { class: "empty" }, "no upstream pools")]));
}

function phaseClass(p) {
  if (p === "progressing" || p === "promoted") return "ok";
  if (p === "paused") return "warn";
  return "bad";
}

export function rollouts(st, box, now) {
  const out = st.rollouts.map((r) => {
    const id = "rollout-" + r.route.replace(/[^A-Za-z0-9_-]/g, "_");
    const steps = h("ol", { class: "steps", "aria-label": "steps (canary weight)" },
      ...r.steps.map((w, i) => h("li", {
        class: i < r.step ? "done" : i === r.step ? "current" : null,
        "aria-current": i === r.step ? "step" : null,
      }, w + " %")));
    const arms = h("table", { "aria-labelledby": id },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, "arm"),
        h("th", { scope: "col" }, "role"),
        h("th", { scope: "col", class: "num" }, "requests"),
        h("th", { scope: "col", class: "num" }, "errors"),
        h("th", { scope: "col", class: "num" }, "P50"),
        h("th", { scope: "col", class: "num" }, "P99"),
        h("th", { scope: "col", class: "num", title: "time to first streamed event, P99" }, "TTFT P99"),
      )),
      h("tbody", {}, ...r.arms.map((a) => h("tr", { "data-arm": a.role },
        h("th", { scope: "row" }, a.name),
        h("td", {}, a.role),
        h("td", { class: "num" }, a.requests.toLocaleString("en")),
        h("td", { class: ["num", errClass(a.error_rate)].filter(Boolean).join(" ") }, f.ratio(a.error_rate)),
        h("td", { class: "num" }, f.seconds(a.p50)),
        h("td", { class: "num" }, f.seconds(a.p99)),
        h("td", { class: "num" }, f.seconds(a.ttft_p99)),
      ))));
    const verdict = r.outcome
      ? h("p", { class: "verdict", "data-field": "verdict" }, "last verdict: ",
          h("span", { class: r.outcome === "pass" ? "ok" : r.outcome === "fail" ? "bad" : "warn" }, r.outcome),
          r.reason ? " — " + r.reason : "")
      : h("p", { class: "verdict empty", "data-field": "verdict" }, "no verdict yet");
    const events = h("ul", { class: "events", "aria-label": "latest events" },
      ...r.events.map((e) => h("li", {}, `${f.clock(e.at)} ${e.kind} → step ${e.step + 1}, ${e.weight} %` + (e.reason ? ` (${e.reason})` : ""))));
    return h("div", { class: "rollout", "data-rollout": r.route },
      h("h3", { id }, r.route,
        h("span", { class: "pill " + phaseClass(r.phase), "data-field": "phase" }, r.phase.replace("_", " ")),
        h("span", { "data-field": "step" }, `step ${r.step + 1} of ${r.steps.length}`),
        h("span", { "data-field": "weight" }, `canary ${r.weight} %`),
        h("span", { class: "note" }, "since " + f.ago(r.step_started, now)),
        r.judge ? h("span", { class: "note", "data-field": "judge" }, "judged by " + r.judge) : null,
        r.fleet_down ? h("span", { class: "bad", "data-field": "fleet" }, "etcd unreachable: step held") : null),
      steps, verdict,
      h("div", { class: "scroll", tabindex: "0", role: "region", "aria-labelledby": id }, arms),
      events);
  });
  box.replaceChildren(...(out.length ? out : [h("p", { class: "empty" }, "no rollouts in this configuration")]));
}

export function limits(st, table) {
  const rows = st.limits.map((l) => h("tr", { "data-limit": l.name },
    h("th", { scope: "row" }, l.name, l.mode === "shadow" ? h("span", { class: "note" }, " shadow") : null),
    h("td", {}, l.rule + (l.redis ? " (global)" : "") + " by ", h("span", { class: "mono" }, l.key)),
    h("td", { class: "num" }, `${l.keys} / ${l.max_keys}`),
    h("td", { class: "num", "data-col": "admitted" }, f.rate(l.admitted_rate)),
    h("td", { class: ["num", l.limited_rate > 0 ? "warn" : null].filter(Boolean).join(" "), "data-col": "limited" }, f.rate(l.limited_rate)),
    h("td", {}, f.spark(l.spark_limited, null, f.sparkLabel(`${l.name} refusals`, l.spark_limited))),
    h("td", { class: "wrap mono", "data-col": "hottest" },
      l.hottest.length ? l.hottest.map((k) => `${k.key} ${k.used}/${k.refused}`).join(" · ") : "–"),
  ));
  fill(table.tBodies[0], rows, 7, "no rate limits in this configuration");
}

export function reloads(st, table) {
  const rows = st.reloads.map((r) => h("tr", { class: r.error ? "is-bad" : null },
    h("td", {}, f.clock(r.at)),
    h("td", { class: "num" }, String(r.generation)),
    r.error
      ? h("td", { class: "err" }, "refused, generation " + r.generation + " kept serving:\n" + r.error)
      : h("td", { class: "ok" }, "applied"),
  ));
  fill(table.tBodies[0], rows, 3, "no reload history");
}

// fleet shows whatever the fleet hook returns: a list of objects as a
// table (one column per key), anything else as JSON.
export function fleet(st, section, link, box) {
  const show = st.fleet !== undefined && st.fleet !== null;
  section.hidden = !show;
  link.hidden = !show;
  if (!show) return;
  let list = st.fleet;
  if (!Array.isArray(list) && typeof list === "object" && Array.isArray(list.nodes)) list = list.nodes;
  if (Array.isArray(list) && list.length && list.every((x) => x && typeof x === "object")) {
    const keys = [...new Set(list.flatMap((x) => Object.keys(x)))];
    const cell = (v) => (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v ?? "–"));
    box.replaceChildren(h("div", { class: "scroll", tabindex: "0", role: "region", "aria-labelledby": "fleet-h" },
      h("table", {},
        h("thead", {}, h("tr", {}, ...keys.map((k) => h("th", { scope: "col" }, k)))),
        h("tbody", {}, ...list.map((x) => h("tr", {}, ...keys.map((k) => h("td", {}, cell(x[k])))))))));
    return;
  }
  box.replaceChildren(h("pre", { class: "json" }, JSON.stringify(st.fleet, null, 2)));
}
