// Line's only script: copy buttons, confirmations, and live status panels.
// Pages work without it (links refresh, forms submit).
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy)?.textContent ?? "";
  navigator.clipboard?.writeText(text).then(
    () => { button.textContent = "Copied"; },
    () => { button.textContent = "Select and copy"; },
  );
});

document.addEventListener("submit", (event) => {
  const form = event.target.closest("form[data-confirm]");
  if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

// <div data-poll="/url">: fetch the fragment each second until it says data-done.
for (const panel of document.querySelectorAll("[data-poll]")) {
  let polls = 0;
  const poll = async () => {
    polls += 1;
    try {
      const response = await fetch(panel.dataset.poll, { credentials: "same-origin" });
      if (response.redirected) {
        panel.textContent = "Your session has ended: reload the page to log in again.";
        return;
      }
      if (response.ok) {
        panel.innerHTML = await response.text();
        if (panel.querySelector("[data-done]")) return;
      }
    } catch (_) { /* the network hiccupped: try again */ }
    if (polls < 120) setTimeout(poll, 1000);
  };
  poll();
}
