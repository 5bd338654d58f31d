// runwatch console: the silence form's preview in place. "Preview" asks the collector which
// hosts and rules the globs match (GET /silences/preview, an HTML fragment) and shows it
// without leaving the page; changing a glob previews again. Without script, "Preview" submits
// the form and the page comes back with the same preview.
"use strict";
(() => {
  const form = document.getElementById("silence-form");
  const button = document.getElementById("preview-silence");
  const place = document.getElementById("silence-preview");
  if (!form || !button || !place) {
    return;
  }
  const field = (name) => form.elements.namedItem(name);
  let asked = 0;
  let timer = null;
  let shown = null; // the globs of the preview on show (or on its way): not asked again
  const preview = async (again) => {
    clearTimeout(timer);
    const host = field("host").value.trim();
    const rule = field("rule").value.trim();
    if (!host || !rule) {
      shown = null;
      place.textContent = "Give the hosts and the rules to see what they match.";
      return true;
    }
    if (!again && shown === `${host}\n${rule}`) {
      return true; // keep the preview, and a confirmation already ticked in it
    }
    shown = `${host}\n${rule}`;
    const query = new URLSearchParams({ host, rule, duration: field("duration").value });
    const mine = ++asked;
    try {
      const answer = await fetch(`/silences/preview?${query}`, { credentials: "same-origin" });
      if (mine !== asked) {
        return true; // a newer preview is on its way
      }
      if (answer.status === 401) {
        shown = null;
        return false; // the session ended: let the form go, the server says so
      }
      place.innerHTML = await answer.text();
      return true;
    } catch (error) {
      shown = null;
      return false;
    }
  };
  button.addEventListener("click", async (event) => {
    event.preventDefault();
    if (!(await preview(true))) {
      form.requestSubmit(button); // the page without script does the same
    }
  });
  for (const name of ["host", "rule"]) {
    field(name).addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => preview(false), 400);
    });
  }
})();
