// The page of `python -m pipeline serve` (pipeline/apps/web/app.py has the routes it calls).
// Each photo is sent as its own request and becomes a job; at most IN_FLIGHT of this tab's photos
// wait in the server's queue at a time, the rest wait here, so one tab's folder does not fill the
// queue; a full queue (429) is retried after a pause.
"use strict";

const IN_FLIGHT = 4;
const POLL_MS = 400;
const client = sessionStorage.getItem("client") || crypto.randomUUID();
sessionStorage.setItem("client", client);

const $ = (id) => document.getElementById(id);
const waiting = []; // {file, kind, query, card} not yet sent
let active = 0; // this tab's jobs sent and not finished
const done = []; // job ids with an output

async function send(item) {
  const query = new URLSearchParams({ client, name: item.file.name, ...item.query });
  for (;;) {
    const response = await fetch(`/api/${item.kind}?${query}`, { method: "POST", body: item.file });
    const body = await response.json();
    if (response.status === 429) {
      item.card.status(`waiting: ${body.error}`);
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (!response.ok) throw new Error(body.error);
    return body;
  }
}

async function pump() {
  while (active < IN_FLIGHT && waiting.length) {
    const item = waiting.shift();
    active += 1;
    run(item).finally(() => { active -= 1; pump(); });
  }
}

async function run(item) {
  let job;
  try {
    item.card.status("uploading");
    job = await send(item);
  } catch (error) {
    item.card.fail(error.message);
    return;
  }
  for (;;) {
    let state;
    try {
      const response = await fetch(`/api/jobs/${job.id}`);
      if (response.status === 404) return item.card.fail("the server no longer knows this photo");
      state = await response.json();
    } catch (error) { // a poll that failed (the server busy, restarting): ask again
      await new Promise((r) => setTimeout(r, POLL_MS));
      continue;
    }
    if (state.state === "queued") item.card.status(`queued (${state.position} before it)`, 0);
    if (state.state === "working") item.card.status("working", state.progress);
    if (state.state === "failed") return item.card.fail(state.error);
    if (state.state === "done") {
      done.push(job.id);
      $("zip").disabled = false;
      item.card.finish(job.id, state);
      return summary();
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

function card(list, name) {
  const li = document.createElement("li");
  li.className = "card";
  li.innerHTML = `<div class="name"></div><div class="status">waiting</div><progress max="1" value="0"></progress>`;
  li.querySelector(".name").textContent = name;
  list.append(li);
  const text = li.querySelector(".status");
  const bar = li.querySelector("progress");
  return {
    status(message, progress) {
      text.textContent = message;
      if (progress !== undefined) bar.value = progress;
    },
    fail(message) {
      li.classList.add("failed");
      text.textContent = `failed: ${message}`;
      bar.remove();
      summary();
    },
    finish(id, state) {
      li.classList.add("done");
      text.textContent = `${state.output}, ${state.seconds.toFixed(1)} s`;
      bar.remove();
      const compare = document.createElement("div");
      compare.className = "compare";
      compare.innerHTML = `<img class="before" alt="before"><img class="after" alt="after">
        <input type="range" min="0" max="100" value="50" aria-label="before | after">`;
      compare.querySelector(".before").src = `/api/jobs/${id}/preview/gray`;
      compare.querySelector(".after").src = `/api/jobs/${id}/preview/result`;
      const after = compare.querySelector(".after");
      compare.querySelector("input").addEventListener("input", (e) => {
        after.style.clipPath = `inset(0 0 0 ${e.target.value}%)`;
      });
      const link = document.createElement("a");
      link.className = "download";
      link.href = `/api/jobs/${id}/file`;
      link.download = state.output;
      link.textContent = "Download (full size)";
      li.append(compare, link);
    },
  };
}

function summary() {
  const cards = document.querySelectorAll("#results .card");
  const failed = document.querySelectorAll("#results .card.failed").length;
  const finished = document.querySelectorAll("#results .card.done").length;
  $("summary").textContent = cards.length
    ? `${finished} of ${cards.length} colorized${failed ? `, ${failed} failed` : ""}` : "";
}

function colorizeSettings() {
  const query = {};
  for (const key of ["vividness", "saturation", "seed", "steps"]) query[key] = $(key).value;
  return query;
}

function addPhotos(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || /\.(png|jpe?g)$/i.test(f.name));
  for (const file of images) {
    const name = file.webkitRelativePath || file.name;
    waiting.push({ file, kind: "colorize", query: colorizeSettings(), card: card($("results"), name) });
  }
  summary();
  pump();
}

async function paint() {
  const photo = $("content").files[0];
  if (!photo) return alert("Choose a photo to paint.");
  const query = {
    steps: $("style-steps").value, size: $("style-size").value,
    style_weight: $("style-weight").value, seed: $("style-seed").value,
    painting: $("painting").value,
  };
  const item = { file: photo, kind: "stylize", query, card: card($("paintings"), photo.name) };
  const own = $("own").files[0];
  if (own) {
    const response = await fetch(`/api/paintings?${new URLSearchParams({ name: own.name })}`,
      { method: "POST", body: own });
    const body = await response.json();
    if (!response.ok) return item.card.fail(body.error);
    item.query.painting = body.painting;
  }
  waiting.push(item);
  pump();
}

async function start() {
  const info = await (await fetch("/api/info")).json();
  $("out").textContent = info.out;
  const c = info.colorize;
  $("vividness").value = c.vividness;
  $("saturation").max = c.max_saturation;
  $("saturation").value = c.saturation;
  $("seed").value = c.seed;
  $("steps").value = c.steps;
  for (const id of ["vividness", "saturation"]) {
    const show = () => { document.querySelector(`output[for=${id}]`).textContent = $(id).value; };
    $(id).addEventListener("input", show);
    show();
  }
  const s = info.stylize;
  $("style-steps").value = s.steps;
  $("style-weight").value = s.style_weight;
  $("style-seed").value = s.seed;
  for (const size of [...new Set([256, 384, 512, 768, 1024, s.size])].sort((a, b) => a - b)) {
    if (size < s.sizes[0] || size > s.sizes[1]) continue;
    $("style-size").append(new Option(`${size} px`, size, false, size === s.size));
  }
  for (const p of info.paintings) $("painting").append(new Option(p.title, p.file));

  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== tab.dataset.tab;
    });
  }
  $("photos").addEventListener("change", (e) => addPhotos(e.target.files));
  $("folder").addEventListener("change", (e) => addPhotos(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addPhotos(e.dataTransfer.files);
  });
  $("zip").addEventListener("click", () => {
    const link = document.createElement("a");
    link.href = `/api/zip?ids=${done.join(",")}`;
    link.download = "colorized.zip";
    link.click();
  });
  $("paint").addEventListener("click", paint);
  $("painting").addEventListener("change", () => { $("own").value = ""; }); // a shipped one again
}

start();
