/**
 * Small live charts: an SVG line over the last 15 minutes, drawn by hand (a polyline per run of
 * points; a gap where an interval had no calls). Each chart says what it shows and its latest value in
 * words, for screen readers and for a glance.
 */

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 300;
const HEIGHT = 64;
const SPAN_MS = 15 * 60_000;

function svg(tag, attributes) {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

/**
 * A chart of `key` of each point ({ at, [key] }), with `format` for values. Returns a figure that
 * `update(points)` redraws in place.
 */
export function lineChart({ title, key, format }) {
  const figure = document.createElement("figure");
  figure.className = "chart";
  const caption = document.createElement("figcaption");
  const name = document.createElement("span");
  name.className = "chart-title";
  name.textContent = title;
  const latest = document.createElement("span");
  latest.className = "chart-value";
  caption.append(name, latest);
  const drawing = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
    role: "img",
    preserveAspectRatio: "none",
    class: "chart-svg",
  });
  const label = svg("title", {});
  drawing.append(label);
  const lines = svg("g", { class: "chart-line" });
  const scale = svg("text", { x: 4, y: 12, class: "chart-scale" });
  drawing.append(svg("line", { x1: 0, y1: HEIGHT - 0.5, x2: WIDTH, y2: HEIGHT - 0.5, class: "chart-axis" }));
  drawing.append(lines, scale);
  figure.append(caption, drawing);

  const update = (points, now = Date.now()) => {
    const values = points.map((p) => p[key]).filter((v) => v !== null && v !== undefined);
    const max = Math.max(0, ...values);
    const top = max > 0 ? max * 1.15 : 1;
    // The latest interval that had calls: a quiet moment does not blank the figure.
    const last = values.length > 0 ? values[values.length - 1] : null;
    const text = last === null ? "no calls yet" : format(last);
    latest.textContent = text;
    label.textContent = `${title} over the last 15 minutes: latest ${text}, highest ${values.length ? format(max) : "none"}`;
    scale.textContent = values.length ? `max ${format(max)}` : "";
    lines.replaceChildren();
    let run = [];
    const flush = () => {
      if (run.length === 1) run.push([run[0][0] + 1, run[0][1]]);
      if (run.length > 1) lines.append(svg("polyline", { points: run.map((p) => p.join(",")).join(" ") }));
      run = [];
    };
    for (const point of points) {
      const value = point[key];
      if (value === null || value === undefined) {
        flush();
        continue;
      }
      const x = ((point.at - (now - SPAN_MS)) / SPAN_MS) * WIDTH;
      const y = HEIGHT - 2 - (value / top) * (HEIGHT - 16);
      run.push([Math.max(0, x).toFixed(1), y.toFixed(1)]);
    }
    flush();
  };
  return { element: figure, update };
}
