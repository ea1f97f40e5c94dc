// Number formatting and sparklines for the dashboard.

const SVG = "http://www.w3.org/2000/svg";

// rate formats events per second.
export function rate(x) {
  if (!x) return "0";
  if (x < 10) return x.toFixed(1);
  return Math.round(x).toLocaleString("en");
}

// ratio formats a share (0..1) as a percentage.
export function ratio(x) {
  if (!x) return "0 %";
  const p = x * 100;
  if (p < 0.1) return "<0.1 %";
  return (p < 10 ? p.toFixed(1) : Math.round(p)) + " %";
}

// seconds formats a duration given in seconds; null shows a dash.
export function seconds(x, over) {
  if (x === undefined || x === null) return "–";
  const pre = over ? "≥" : "";
  if (x < 0.001) return pre + (x * 1000).toFixed(2) + " ms";
  if (x < 0.01) return pre + (x * 1000).toFixed(1) + " ms";
  if (x < 1) return pre + Math.round(x * 1000) + " ms";
  return pre + x.toFixed(x < 10 ? 2 : 1) + " s";
}

// clock formats a time as HH:MM:SS local time.
export function clock(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "–";
  return d.toLocaleTimeString("en-GB", { hour12: false });
}

// ago says how long before now a time was, roughly.
export function ago(iso, now) {
  const s = Math.max(0, (now - new Date(iso)) / 1000);
  if (s < 90) return Math.round(s) + " s ago";
  if (s < 5400) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
}

// spark draws values (oldest first) as a line with its area, and errs (same
// length, same scale) as a second line; label describes it for screen readers.
export function spark(values, errs, label) {
  const w = 120, h = 22, pad = 1.5;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  if (!values || values.length < 2) return svg;
  const max = Math.max(...values, ...(errs || []), 1e-9);
  const step = w / (values.length - 1);
  const y = (v) => (h - pad - (v / max) * (h - 2 * pad)).toFixed(1);
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`).join(" ");
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("class", "area");
  area.setAttribute("points", `0,${h} ${pts} ${w},${h}`);
  svg.append(area);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("class", "rate");
  line.setAttribute("points", pts);
  svg.append(line);
  if (errs && errs.some((v) => v > 0)) {
    const e = document.createElementNS(SVG, "polyline");
    e.setAttribute("class", "err");
    e.setAttribute("points", errs.map((v, i) => `${(i * step).toFixed(1)},${y(v)}`).join(" "));
    svg.append(e);
  }
  return svg;
}

// sparkLabel sums a series up in words.
export function sparkLabel(what, values) {
  if (!values || !values.length) return `${what}: no data yet`;
  const max = Math.max(...values);
  const now = values[values.length - 1];
  return `${what} over the last 5 minutes: now ${rate(now)}, peak ${rate(max)} per second`;
}
