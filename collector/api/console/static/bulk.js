// runwatch console: the calls list's selection ("all on this page" and one box per call) and
// its bulk bar. Without script the form works too: "all on this page" is sent as all=page.
"use strict";
(() => {
  // The list is a live region (live.js swaps it in anew every few seconds): the boxes and
  // "all on this page" are looked up each time, never held.
  const form = document.getElementById("calls-bulk");
  const pageBox = () => document.getElementById("select-page");
  if (!form || !pageBox()) {
    return;
  }
  const boxes = () => Array.from(document.querySelectorAll("input.select-call"));
  const count = document.getElementById("bulk-count");
  const selected = () => boxes().filter((box) => box.checked).length;
  const show = () => {
    const all = pageBox();
    if (!all) {
      return;
    }
    const ticked = selected();
    const total = boxes().length;
    all.checked = total > 0 && ticked === total;
    all.indeterminate = ticked > 0 && ticked < total;
    count.textContent = ticked ? `${ticked} selected` : "";
  };
  document.addEventListener("change", (event) => {
    const target = event.target;
    if (target.id === "select-page") {
      for (const box of boxes()) {
        box.checked = target.checked;
      }
      show();
    } else if (target.classList && target.classList.contains("select-call")) {
      show();
    }
  });
  // After a live swap the new list's "all on this page" box shows the carried-over ticks.
  document.addEventListener("runwatch:live", show);
  form.addEventListener("submit", (event) => {
    const ticked = selected();
    if (!ticked) {
      event.preventDefault();
      count.textContent = "Select one or more calls first.";
      return;
    }
    // The boxes say which calls: all=page would add the page's calls again (harmless, but
    // a box unticked after "all" must stay unticked).
    const all = pageBox();
    if (all) {
      all.checked = false;
    }
    const chosen = document.getElementById("bulk-action").value;
    if ((chosen === "resolve" || chosen === "silence") && !window.confirm(
      `${chosen === "resolve" ? "Resolve" : "Silence"} ${ticked} call${ticked === 1 ? "" : "s"}?`)) {
      event.preventDefault();
      show();
    }
  });
  // Only the fields the chosen action takes, and those it needs are required.
  const action = document.getElementById("bulk-action");
  const fields = {
    text: ["comment", "resolve"],
    duration: ["silence"],
    reason: ["silence"],
  };
  const needed = { text: ["comment"], duration: ["silence"], reason: ["silence"] };
  const fit = () => {
    for (const [name, actions] of Object.entries(fields)) {
      const input = document.getElementById(`bulk-${name}`);
      input.closest("label").hidden = !actions.includes(action.value);
      input.required = needed[name].includes(action.value);
    }
  };
  action.addEventListener("change", fit);
  fit();
  show();
})();
