// Keeps a live log scrolled to its newest line, unless the reader scrolled up.
document.addEventListener("htmx:beforeSwap", (event) => {
  const log = event.detail.target.closest && event.detail.target.closest("pre.log");
  if (log) log.dataset.pinned = String(log.scrollHeight - log.scrollTop - log.clientHeight < 40);
});
document.addEventListener("htmx:afterSettle", () => {
  document.querySelectorAll("pre.log").forEach((log) => {
    if (log.dataset.pinned !== "false") log.scrollTop = log.scrollHeight;
  });
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("pre.log").forEach((log) => { log.scrollTop = log.scrollHeight; });
});
