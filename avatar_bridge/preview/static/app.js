// The preview page: draws the newest face state once per browser frame and sends the controls'
// commands to the preview server, which forwards them to the daemon's control socket.
import { THREE, GLTFLoader, decodeMsgpack } from "./vendor/vendor.js";

const $ = (id) => document.getElementById(id);
const GROUPS = [  // display groups of the 52 ARKit shapes, by name prefix
  ["eyes", (n) => /^eye(Blink|Squint|Wide)/.test(n)],
  ["gaze", (n) => n.startsWith("eyeLook")],
  ["brows", (n) => n.startsWith("brow")],
  ["jaw / mouth", (n) => n.startsWith("jaw") || n.startsWith("mouth")],
  ["cheek / nose", (n) => n.startsWith("cheek") || n.startsWith("nose")],
  ["tongue", (n) => n.startsWith("tongue")],
];
const FILTER_GROUPS = ["eyes", "gaze", "brows", "mouth", "head"];
const SLIDERS = { min_cutoff: [0.05, 5.0], beta: [0.1, 50.0] };  // log-scaled slider ranges
const DEG = 180 / Math.PI;

// Everything the tests (and a curious user in the console) may read.
const preview = window.preview = {
  names: [], state: null, facesReceived: 0, statesDrawn: 0, status: null, daemonAlive: false,
  drawn: null, connected: false, signal: null, head: null, morphMeshes: [], cameraFrames: 0, camera: null,
  morph(name) {  // the jaw etc. as the head shows it now
    const m = this.morphMeshes[0];
    return m && name in m.morphTargetDictionary ? m.morphTargetInfluences[m.morphTargetDictionary[name]] : null;
  },
};

// --- connection -----------------------------------------------------------------------------------
let ws = null, nextId = 1, retryMs = 250;
const pending = new Map();

function connect() {
  ws = new WebSocket(`ws://${location.host}/ws`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => { preview.connected = true; retryMs = 250; };
  ws.onmessage = (ev) => {
    if (typeof ev.data !== "string") {  // a face payload exactly as on the bus (msgpack schema v1)
      preview.state = decodeMsgpack(new Uint8Array(ev.data));
      preview.facesReceived++;
      return;
    }
    const msg = JSON.parse(ev.data);
    if (msg.type === "hello") onHello(msg);
    else if (msg.type === "daemon") onDaemon(msg.alive);
    else if (msg.type === "status") onStatus(msg.status);
    else if (msg.type === "camera") onCamera(msg.frame);
    else if (msg.type === "reply" && pending.has(msg.id)) { pending.get(msg.id)(msg.reply); pending.delete(msg.id); }
  };
  ws.onclose = () => {  // the daemon (and with `run --preview` its server) went away: keep trying
    preview.connected = false;
    onDaemon(false);
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 2000);
  };
}

function send(cmd, args = {}) {
  return new Promise((resolve) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) { resolve({ ok: false, error: "not connected to the preview server" }); return; }
    const id = nextId++;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, cmd, ...args }));
  });
}

function say(id, reply, okText) {
  const el = $(id);
  el.classList.toggle("error", !reply.ok);
  el.textContent = reply.ok ? okText(reply) : reply.error;
}

function onHello(msg) {
  if (!preview.names.length) { preview.names = msg.names; buildBars(); }
  $("camera-toggle").disabled = !msg.camera_allowed;
  if ($("camera-toggle").checked) send("camera", { on: true });  // a reconnect keeps the view the user chose
}

function onDaemon(alive) {
  const was = preview.daemonAlive;
  preview.daemonAlive = alive;
  $("banner-gone").hidden = alive;
  if (alive && !was) refreshSignal();
}

function onStatus(s) {
  preview.status = s;
  $("source").textContent = s.source ?? "—";
  $("estimator").textContent = s.estimator ?? (s.replay ? "replay" : "—");
  $("profile").textContent = s.profile ?? "—";
  $("fps").textContent = (s.fps ?? 0).toFixed(1);
  $("dropped").textContent = s.dropped_frames ?? 0;
  const rows = Object.entries(s.stages ?? {}).map(([k, v]) =>
    `<tr><td>${k}</td><td>${v.median_ms.toFixed(2)} ms</td><td>p95 ${v.p95_ms.toFixed(2)} ms</td></tr>`);
  $("stages").innerHTML = rows.join("");
  if (s.signal) showSignal(s.signal);
  const rec = s.recorder;
  if (rec && rec.recording) $("record-msg").textContent = `recording ${rec.path}: ${rec.frames} frames`;
}

// --- bars -----------------------------------------------------------------------------------------
let barEls = [];
function buildBars() {
  const box = $("bars");
  box.innerHTML = "";
  barEls = new Array(preview.names.length);
  for (const [title, test] of GROUPS) {
    const g = document.createElement("div");
    g.className = "group";
    g.innerHTML = `<h3>${title}</h3>`;
    preview.names.forEach((n, i) => {
      if (!test(n) || barEls[i]) return;
      const row = document.createElement("div");
      row.className = "bar";
      row.dataset.name = n;
      row.innerHTML = `<span class="name">${n}</span><span class="track"><span class="fill"></span></span><span class="val">0.00</span>`;
      g.appendChild(row);
      barEls[i] = { row, fill: row.querySelector(".fill"), val: row.querySelector(".val") };
    });
    box.appendChild(g);
  }
}

function drawBars(bs) {
  const strongest = [...bs.keys()].sort((a, b) => bs[b] - bs[a]).slice(0, 3).filter((i) => bs[i] > 0.05);
  bs.forEach((v, i) => {
    const el = barEls[i];
    if (!el) return;
    el.fill.style.width = `${(v * 100).toFixed(1)}%`;
    el.val.textContent = v.toFixed(2);
    el.row.classList.toggle("strong", strongest.includes(i));
  });
}

// --- head -----------------------------------------------------------------------------------------
const canvas = $("head");
let renderer = null, scene, camera, headRoot, eyes = [];
try {
  renderer = new THREE.WebGLRenderer({ canvas, antialias: true, preserveDrawingBuffer: true });
  renderer.setClearColor(0x262a33);
} catch (err) {
  $("head-msg").textContent = "3D view unavailable (no WebGL): " + err.message;
}
scene = new THREE.Scene();
camera = new THREE.PerspectiveCamera(24, 1, 0.05, 10);
camera.position.set(0, 0.0, 0.85);
scene.add(new THREE.HemisphereLight(0xffffff, 0x404050, 1.6));
const key = new THREE.DirectionalLight(0xffffff, 1.8);
key.position.set(0.4, 0.6, 1.0);
scene.add(key);
headRoot = new THREE.Group();
scene.add(headRoot);

new GLTFLoader().load("/head.glb", (gltf) => {
  headRoot.add(gltf.scene);
  gltf.scene.traverse((o) => {
    if (o.isMesh && o.morphTargetDictionary) preview.morphMeshes.push(o);
    if (o.name === "eyeLeft" || o.name === "eyeRight") eyes.push(o);
  });
  preview.head = gltf.scene;
}, undefined, (err) => { $("head-msg").textContent = "cannot load the head: " + err; });

function resize() {
  if (!renderer) return;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * devicePixelRatio) || canvas.height !== Math.round(h * devicePixelRatio)) {
    renderer.setPixelRatio(devicePixelRatio);
    renderer.setSize(w, h, false);
    camera.aspect = w / h;
    camera.updateProjectionMatrix();
  }
}

const gazeQ = new THREE.Quaternion(), qy = new THREE.Quaternion(), qx = new THREE.Quaternion();
const Y = new THREE.Vector3(0, 1, 0), X = new THREE.Vector3(1, 0, 0);
function drawHead(s) {
  for (const mesh of preview.morphMeshes) {
    const dict = mesh.morphTargetDictionary;
    preview.names.forEach((n, i) => { if (n in dict) mesh.morphTargetInfluences[dict[n]] = s.bs[i]; });
  }
  const [x, y, z, w] = s.head.q;  // head axes = ICT's: x the performer's left, y up, z out of the face
  headRoot.quaternion.set(x, y, z, w);
  for (const eye of eyes) {  // gaze: yaw about +y, pitch up is a negative turn about +x (conventions.py)
    const [yaw, pitch] = eye.name === "eyeLeft" ? s.gaze.l : s.gaze.r;
    gazeQ.multiplyQuaternions(qy.setFromAxisAngle(Y, yaw), qx.setFromAxisAngle(X, -pitch));
    eye.quaternion.copy(gazeQ);
  }
}

function yawPitchRoll([x, y, z, w]) {  // as avatar_bridge/conventions.py head_yaw_pitch_roll
  const m12 = 2 * (y * z - x * w), m02 = 2 * (x * z + y * w), m22 = 1 - 2 * (x * x + y * y);
  const m10 = 2 * (x * y + z * w), m11 = 1 - 2 * (x * x + z * z);
  return [Math.atan2(m02, m22), Math.asin(Math.max(-1, Math.min(1, -m12))), Math.atan2(m10, m11)];
}
const deg2 = (g) => `${(g[0] * DEG).toFixed(1)}, ${(g[1] * DEG).toFixed(1)}`;

let drawn = null;
function frame() {
  requestAnimationFrame(frame);
  const s = preview.state;
  if (s && s !== drawn && preview.names.length) {
    drawn = s;
    drawBars(s.bs);
    drawHead(s);
    preview.drawn = s;
    const [yaw, pitch, roll] = yawPitchRoll(s.head.q);
    $("yaw").textContent = (yaw * DEG).toFixed(1);
    $("pitch").textContent = (pitch * DEG).toFixed(1);
    $("roll").textContent = (roll * DEG).toFixed(1);
    $("gaze-l").textContent = deg2(s.gaze.l);
    $("gaze-r").textContent = deg2(s.gaze.r);
    $("seq").textContent = s.seq;
    $("banner-noface").hidden = s.present || !preview.daemonAlive;
    preview.statesDrawn++;
  }
  if (renderer) { resize(); renderer.render(scene, camera); }
}

// --- controls -------------------------------------------------------------------------------------
for (const kind of ["neutral", "range"]) {
  $(`calibrate-${kind}`).onclick = async () => {
    const reply = await send("calibrate", { kind });
    say("calibrate-msg", reply, (r) => `calibrating ${kind}: hold for ${r.seconds} s…`);
    if (reply.ok) pollCalibration();
  };
}
async function pollCalibration() {
  const r = await send("calibrate.status");
  if (r.ok && r.state === "collecting") {
    $("calibrate-msg").textContent = `calibrating ${r.kind}: ${r.frames} frames, ${r.seconds_left.toFixed(1)} s left`;
    setTimeout(pollCalibration, 300);
  } else {
    say("calibrate-msg", r.ok && r.state === "failed" ? { ok: false, error: r.message } : r,
        (x) => x.state === "done" ? `calibrated (${x.kind}, ${x.frames} frames)${x.profile_path ? "; saved to " + x.profile_path : ""}` : "");
  }
}

const toSlider = (v, [lo, hi]) => Math.round(1000 * Math.log(v / lo) / Math.log(hi / lo));
const fromSlider = (s, [lo, hi]) => lo * Math.pow(hi / lo, s / 1000);
for (const g of FILTER_GROUPS) {
  const tr = document.createElement("tr");
  tr.innerHTML = `<td>${g}</td>` + Object.keys(SLIDERS).map((k) =>
    `<td><input type="range" min="0" max="1000" id="smooth-${g}-${k}" title=""></td>`).join("");
  $("smooth-table").appendChild(tr);
  for (const k of Object.keys(SLIDERS)) {
    $(`smooth-${g}-${k}`).onchange = (ev) =>
      setSignal({ filter: { [g]: { [k]: +fromSlider(+ev.target.value, SLIDERS[k]).toFixed(3) } } });
  }
}
$("mirror").onchange = (ev) => setSignal({ mirror: ev.target.checked });
$("smoothing").onchange = (ev) => setSignal({ smoothing: ev.target.checked });

async function setSignal(change) {
  const reply = await send("signal.set", change);
  say("signal-msg", reply, () => "applied");
  if (reply.ok) showSignal(reply);
}
async function refreshSignal() {
  const reply = await send("signal.get");
  if (reply.ok) showSignal(reply);
}
function showSignal(sig) {
  preview.signal = sig;
  $("mirror").checked = !!sig.mirror;
  $("smoothing").checked = !!sig.smoothing;
  for (const g of FILTER_GROUPS) {
    for (const k of Object.keys(SLIDERS)) {
      const el = $(`smooth-${g}-${k}`), v = sig.filter?.[g]?.[k];
      if (v !== undefined && document.activeElement !== el) { el.value = toSlider(v, SLIDERS[k]); el.title = v.toFixed(3); }
    }
  }
}

$("record-start").onclick = async () => {
  const reply = await send("record.start", { name: $("take-name").value });
  say("record-msg", reply, (r) => `recording to ${r.path}`);
};
$("record-stop").onclick = async () => {
  const reply = await send("record.stop");
  say("record-msg", reply, (r) => r.summary);
};

// --- camera view (off by default; frames are fetched only while it is on) --------------------------
const camCanvas = $("camera"), cam2d = camCanvas.getContext("2d");
$("camera-toggle").onchange = async (ev) => {
  const on = ev.target.checked;
  const reply = await send("camera", { on });
  say("camera-msg", reply, () => on ? "camera view on (this machine only)" : "");
  if (!reply.ok) ev.target.checked = false;
  $("camera-box").hidden = !(on && reply.ok);
};
function onCamera(frame) {
  if (!$("camera-toggle").checked) return;
  if (!frame.ok || !frame.jpeg) { $("camera-msg").textContent = frame.error ?? "no camera frame yet"; return; }
  const img = new Image();
  img.onload = () => {
    camCanvas.width = img.width;
    camCanvas.height = img.height;
    cam2d.drawImage(img, 0, 0);
    const lm = frame.landmarks ?? [];
    cam2d.fillStyle = "#00ff66";
    for (let i = 0; i < lm.length; i += 2) cam2d.fillRect(lm[i] * img.width - 1, lm[i + 1] * img.height - 1, 2, 2);
    preview.cameraFrames++;
    preview.camera = { width: img.width, height: img.height, landmarks: lm.length / 2, frame: frame.frame };
  };
  img.src = "data:image/jpeg;base64," + frame.jpeg;
}

buildBars();
connect();
requestAnimationFrame(frame);
