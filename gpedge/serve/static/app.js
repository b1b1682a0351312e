"use strict";
// The gpedge web page: send a dropped or chosen scan to POST /predict and show the answer. For a model of
// several contrasts, the files of one scan are sent together, one form part per contrast, each file going
// to the contrast its name contains (the longest such name: "t1ce" before "t1").

const STAGES = [
  ["upload", "upload (server read)"],
  ["load", "load / decode"],
  ["preprocess", "preprocess"],
  ["inference", "inference"],
  ["postprocess", "postprocess"],
  ["render", "render overlay"],
  ["server_total", "server total"],
];

const $ = (id) => document.getElementById(id);

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message || "";
  $("status").className = "status " + state;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell;
    tr.appendChild(td);
  }
  return tr;
}

function bar(fraction, strong) {
  const outer = document.createElement("div");
  outer.className = "bar" + (strong ? " strong" : "");
  const inner = document.createElement("div");
  inner.style.width = (100 * fraction).toFixed(1) + "%";
  outer.appendChild(inner);
  return outer;
}

function show(answer, file, roundTripMs) {
  const results = answer.results;
  const key = results.find((r) => (r.slice ?? null) === answer.key_slice) || results[0];
  const probs = $("probabilities");
  probs.replaceChildren();
  if (key.out_of_distribution) {
    // blank or unlike the training data: no diagnosis is shown, only why
    $("label").textContent = "Out of distribution: no diagnosis";
    $("label").dataset.label = "out-of-distribution";
    for (const reason of key.ood_reasons) probs.appendChild(row([reason]));
  } else {
    $("label").textContent = key.label;
    $("label").dataset.label = key.label;
    for (const [name, p] of Object.entries(key.probabilities)) {
      probs.appendChild(row([name, bar(p, name === key.label), p.toFixed(3)]));
    }
  }
  $("overlay").src = "data:image/png;base64," + answer.overlay_png;
  $("caption").textContent = results.length > 1
    ? `${file.name}: slice ${answer.key_slice} of ${results.length} (largest mask)`
    : file.name;
  const tumourSlices = results.filter((r) => r.mask_area_px > 0).length;
  $("mask").textContent = results.length > 1
    ? `mask: ${key.mask_area_px} px on this slice, ${tumourSlices} slices with a mask`
    : `mask: ${key.mask_area_px} px of ${key.width}×${key.height}`;
  const speed = $("speed");
  speed.replaceChildren();
  const per = results.length > 1 ? " (per slice)" : "";
  for (const [stage, title] of STAGES) {
    if (answer.speed_ms[stage] === undefined) continue;
    const isPerImage = ["load", "preprocess", "inference", "postprocess"].includes(stage);
    speed.appendChild(row([title + (isPerImage ? per : ""), answer.speed_ms[stage].toFixed(1) + " ms"]));
  }
  speed.appendChild(row(["round trip (browser)", roundTripMs.toFixed(1) + " ms"]));
  $("result").hidden = false;
}

let channels = [];

// {contrast: file} for the files of one scan, or an error message naming what is missing or doubled.
function byContrast(files) {
  const found = {};
  for (const file of files) {
    const name = file.name.toLowerCase();
    const contrast = [...channels].sort((a, b) => b.length - a.length).find((c) => name.includes(c));
    if (!contrast) return `${file.name}: its name names none of this model's contrasts (${channels.join(", ")})`;
    if (found[contrast]) return `${found[contrast].name} and ${file.name} both look like ${contrast}; choose one file per contrast`;
    found[contrast] = file;
  }
  const missing = channels.filter((c) => !found[c]);
  return missing.length ? `no file for ${missing.join(", ")}: choose the ${channels.length} files of one scan (${channels.join(", ")})` : found;
}

function send(files) {
  if (channels.length <= 1) return predict(files[0], files[0]);
  const parts = byContrast(files);
  if (typeof parts === "string") {
    $("result").hidden = true;
    setState("error", parts);
    return;
  }
  const form = new FormData();
  for (const c of channels) form.append(c, parts[c], parts[c].name);
  return predict(form, parts[channels[0]]);
}

async function predict(body, file) {
  setState("busy", `classifying ${file.name}…`);
  const start = performance.now();
  try {
    const response = await fetch(`/predict?overlay=png&name=${encodeURIComponent(file.name)}`, body instanceof FormData
      ? { method: "POST", body }
      : { method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body });
    const answer = await response.json();
    if (!response.ok) {
      $("result").hidden = true;
      setState("error", `${file.name}: ${answer.error} (HTTP ${response.status})`);
      return;
    }
    show(answer, file, performance.now() - start);
    setState("done", "");
  } catch (err) {
    $("result").hidden = true;
    setState("error", `${file.name}: the server did not answer (${err})`);
  }
}

async function describeModel() {
  try {
    const health = await (await fetch("/health")).json();
    const m = health.model;
    channels = m.channels;
    if (channels.length > 1) {
      $("file").multiple = true;
      $("hint").textContent = `the ${channels.length} files of one scan, each named after its contrast (${channels.join(", ")})`;
    }
    $("model").textContent =
      `${m.arch} · ${m.classes.join(" / ")} · ${m.channels.join(", ")} · ${m.image_size.join("×")} · ${health.backend_description}`;
  } catch (err) {
    $("model").textContent = "model information unavailable";
  }
}

window.addEventListener("DOMContentLoaded", () => {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    if (e.dataTransfer.files.length) send([...e.dataTransfer.files]);
  });
  $("file").addEventListener("change", (e) => {
    if (e.target.files.length) send([...e.target.files]);
  });
  describeModel();
});
