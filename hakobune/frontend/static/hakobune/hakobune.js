// Keeps a live log scrolled to its newest line, unless the reader scrolled up.
// A followed runtime log holds its newest lines only (data-keep): the oldest
// go as new ones come, and "Show older lines" then starts at the first kept.
const followed = new Set();
document.addEventListener("htmx:beforeSwap", (event) => {
  const log = event.detail.target.closest && event.detail.target.closest(".log");
  if (log) log.dataset.pinned = String(log.scrollHeight - log.scrollTop - log.clientHeight < 40);
  if (log && log.dataset.keep && event.target.classList.contains("log-poller")) followed.add(log);
});
document.addEventListener("htmx:afterSettle", () => {
  followed.forEach(keepNewestLines);
  followed.clear();
  document.querySelectorAll(".log").forEach((log) => {
    if (log.dataset.pinned !== "false") log.scrollTop = log.scrollHeight;
  });
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".log").forEach((log) => { log.scrollTop = log.scrollHeight; });
});

function keepNewestLines(log) {
  const lines = log.querySelectorAll(":scope > .line");
  const excess = lines.length - Number(log.dataset.keep);
  if (excess <= 0) return;
  for (let n = 0; n < excess; n++) lines[n].remove();
  log.querySelectorAll(":scope > .log-older, :scope > .muted").forEach((element) => element.remove());
  const older = document.createElement("span");
  older.className = "log-older";
  const button = document.createElement("button");
  button.className = "button";
  button.textContent = log.dataset.olderLabel;
  button.setAttribute("hx-get", log.dataset.olderUrl + "&before=" + lines[excess].dataset.id);
  button.setAttribute("hx-target", "closest .log-older");
  button.setAttribute("hx-swap", "outerHTML");
  older.append(button, "\n");
  log.prepend(older);
  htmx.process(older);
}

// A link to a field inside a closed <details> (the guided plan's "change"
// links to the service's settings) opens it and puts the focus on the field.
function openLinkedField() {
  const id = decodeURIComponent(window.location.hash.slice(1));
  const field = id && document.getElementById(id);
  if (!field) return;
  const box = field.closest("details");
  if (box) box.open = true;
  field.scrollIntoView({ block: "center" });
  field.focus({ preventScroll: true });
}
document.addEventListener("DOMContentLoaded", openLinkedField);
window.addEventListener("hashchange", openLinkedField);

// The New service form shows the fields of the chosen source only.
function showChosenSource(form) {
  const chosen = form.querySelector("input[name=source_kind]:checked");
  if (!chosen) return;
  form.querySelectorAll(".source-panel").forEach((panel) => {
    panel.hidden = !panel.dataset.sourceKind.split(" ").includes(chosen.value);
  });
}
document.addEventListener("change", (event) => {
  if (event.target.name === "source_kind") showChosenSource(event.target.form);
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form").forEach(showChosenSource);
});

// The words the upload shows, in the page's language: the form's data-words-*
// attributes (templates/_upload_words.html), with {name} filled in.
function words(form, key, values) {
  const said = form.dataset["words" + key[0].toUpperCase() + key.slice(1)] || "";
  return said.replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));
}

// Uploads show their progress. The form is sent as the browser would send it;
// the answer replaces the page (a redirect to the service, or the form again
// with its errors).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.hasAttribute("data-upload-progress")) return;
  const file = form.querySelector("input[type=file]");
  const chosen = form.querySelector("input[name=source_kind]:checked");
  if (!file || !file.files.length || (chosen && chosen.value !== "archive")) return;
  const limit = Number(file.dataset.maxBytes || 0);
  if (limit && file.files[0].size > limit) {
    event.preventDefault();
    alert(words(form, "tooBig", {
      name: file.files[0].name, size: (file.files[0].size / 1e6).toFixed(0), limit: (limit / 1e6).toFixed(0),
    }));
    return;
  }
  event.preventDefault();
  const box = form.querySelector(".upload-progress");
  const bar = box.querySelector("progress");
  const text = box.querySelector(".upload-progress-text");
  box.hidden = false;
  form.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = true; });
  const request = new XMLHttpRequest();
  request.open(form.method || "POST", form.action || window.location.href);
  request.upload.addEventListener("progress", (progress) => {
    if (!progress.lengthComputable) return;
    const percent = Math.round((progress.loaded / progress.total) * 100);
    bar.value = percent;
    text.textContent = percent < 100 ? words(form, "uploading", { percent }) : words(form, "uploaded", {});
  });
  request.addEventListener("load", () => {
    if (request.responseURL && request.responseURL !== (form.action || window.location.href)) {
      window.location.assign(request.responseURL);
    } else {
      document.open();
      document.write(request.responseText);
      document.close();
    }
  });
  request.addEventListener("error", () => {
    text.textContent = words(form, "lost", {});
    form.querySelectorAll("button[type=submit]").forEach((button) => { button.disabled = false; });
  });
  request.send(new FormData(form));
});
