// The recoserve event display: hits coloured by cluster in 3D (three.js, shipped with the
// package) and in x-y / r-z projections, with the candidates and clusters in tables.
// three.js is installed with the package (`make install` copies the pinned npm build); without
// it the 2D projections and tables still work.
let THREE = null;
try {
  THREE = await import("/static/vendor/three.module.min.js");
} catch (err) {
  document.querySelector("#view3d").parentElement.querySelector(".label").textContent =
    "3D view unavailable: three.js is not installed (run make install)";
}

const PDG_NAMES = { 211: "π+", "-211": "π−", 130: "h0", 22: "γ", 11: "e−", "-11": "e+", 13: "μ−", "-13": "μ+" };
const status = document.getElementById("status");

function say(text, state) {
  status.textContent = text;
  status.dataset.state = state;
}

function colour(cluster) {
  if (cluster < 0) return [0.35, 0.35, 0.35];
  // golden-ratio hues, HSL(h, 0.85, 0.55) -> RGB
  const h = (cluster * 0.618034) % 1, s = 0.85, l = 0.55;
  const k = (n) => (n + h * 12) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0), f(8), f(4)];
}

function headers() {
  const h = { "Content-Type": "application/json", Accept: "application/json" };
  const key = document.getElementById("apikey").value;
  if (key) h["X-API-Key"] = key;
  return h;
}

// ---- 3D view ----
const canvas3d = document.getElementById("view3d");
let renderer = null;
try {
  renderer = THREE && new THREE.WebGLRenderer({ canvas: canvas3d, antialias: true, preserveDrawingBuffer: true });
} catch (err) {
  canvas3d.parentElement.querySelector(".label").textContent = "3D view unavailable: no WebGL";
}
const scene = THREE ? new THREE.Scene() : null;
const camera = THREE ? new THREE.PerspectiveCamera(45, 1, 1, 5000) : null;
let points = null;
let angle = 0.6;
function resize3d() {
  if (!renderer) return;
  const w = canvas3d.clientWidth, h = canvas3d.clientHeight;
  renderer.setSize(w, h, false);
  camera.aspect = w / h;
  camera.updateProjectionMatrix();
}
function place() {
  if (!renderer) return;
  camera.position.set(900 * Math.sin(angle), 250, 900 * Math.cos(angle));
  camera.lookAt(0, 0, 0);
  renderer.render(scene, camera);
}
let dragging = null;
canvas3d.addEventListener("mousedown", (e) => (dragging = e.clientX));
window.addEventListener("mouseup", () => (dragging = null));
window.addEventListener("mousemove", (e) => {
  if (dragging === null) return;
  angle += (e.clientX - dragging) * 0.01;
  dragging = e.clientX;
  place();
});

function draw3d(hits, hitCluster) {
  if (!renderer) return;
  if (points) scene.remove(points);
  const n = hits.length;
  const pos = new Float32Array(3 * n), col = new Float32Array(3 * n);
  for (let i = 0; i < n; i++) {
    const [x, y, z] = hits[i];
    pos.set([x, y, z], 3 * i);
    col.set(colour(hitCluster[i]), 3 * i);
  }
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.BufferAttribute(pos, 3));
  geometry.setAttribute("color", new THREE.BufferAttribute(col, 3));
  points = new THREE.Points(geometry, new THREE.PointsMaterial({ size: 2.5, vertexColors: true }));
  scene.add(points);
  resize3d();
  place();
}

// ---- 2D projections ----
function draw2d(id, hits, hitCluster, project, xr, yr) {
  const canvas = document.getElementById(id);
  canvas.width = canvas.clientWidth;
  canvas.height = canvas.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const sx = canvas.width / (xr[1] - xr[0]), sy = canvas.height / (yr[1] - yr[0]);
  for (let i = 0; i < hits.length; i++) {
    const [u, v] = project(hits[i]);
    const [r, g, b] = colour(hitCluster[i]);
    ctx.fillStyle = `rgb(${255 * r},${255 * g},${255 * b})`;
    ctx.fillRect((u - xr[0]) * sx, canvas.height - (v - yr[0]) * sy, 2, 2);
  }
  canvas.dataset.drawn = String(hits.length);
}

function table(id, rows, columns, format) {
  const el = document.getElementById(id);
  const head = "<tr>" + columns.map((c) => `<th>${c}</th>`).join("") + "</tr>";
  el.innerHTML = head + rows.map((r) => "<tr>" + columns.map((c) => `<td>${format(c, r[c])}</td>`).join("") + "</tr>").join("");
}

function fmt(column, value) {
  if (column === "pdg") return PDG_NAMES[value] || value;
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(column === "eta" || column === "phi" ? 3 : 2);
  return value;
}

function show(event, result) {
  const hits = event.hits;
  draw3d(hits, result.hit_cluster);
  draw2d("viewxy", hits, result.hit_cluster, ([x, y, z]) => [x * 320 / Math.abs(z), y * 320 / Math.abs(z)], [-170, 170], [-170, 170]);
  draw2d("viewrz", hits, result.hit_cluster, ([x, y, z]) => [z, Math.hypot(x, y)], [-540, 540], [0, 180]);
  const candidates = result.candidates || [];
  table("candidates", candidates, ["pdg", "pt", "eta", "phi", "energy", "probability"], fmt);
  table("clusters", result.clusters, ["energy", "x", "y", "z", "n_hits", "p_em", "p_hadron"], fmt);
  document.getElementById("ncand").textContent = `(${candidates.length})`;
  document.getElementById("nclus").textContent = `(${result.clusters.length})`;
  say(`${hits.length} hits, ${result.clusters.length} clusters, ${candidates.length} candidates`, "drawn");
}

async function reconstruct(event) {
  say("reconstructing ...", "busy");
  const body = JSON.stringify({ hits: event.hits, tracks: event.tracks || [] });
  const response = await fetch("/v1/reconstruct", { method: "POST", headers: headers(), body });
  const payload = await response.json();
  if (!response.ok) {
    say(`error ${response.status}: ${payload.detail}`, "error");
    return;
  }
  show(event, payload);
}

document.getElementById("simulate").addEventListener("click", async () => {
  say("simulating ...", "busy");
  const p = document.getElementById("particles").value, s = document.getElementById("seed").value;
  const jets = document.getElementById("jets").checked;
  const response = await fetch(`/v1/simulate?particles=${p}&seed=${s}&jets=${jets}`, { method: "POST", headers: headers() });
  const event = await response.json();
  if (!response.ok) return say(`error ${response.status}: ${event.detail}`, "error");
  await reconstruct(event);
});

document.getElementById("upload").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  try {
    await reconstruct(JSON.parse(await file.text()));
  } catch (err) {
    say(`cannot read ${file.name}: ${err}`, "error");
  }
});

window.addEventListener("resize", () => { resize3d(); place(); });
if (new URLSearchParams(location.search).get("autoload") === "1") document.getElementById("simulate").click();
