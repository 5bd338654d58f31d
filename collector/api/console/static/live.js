// runwatch console: live pages (collector/api/console/live.py).
//
// A page with #live-status asks for itself again every few seconds (header X-Runwatch-Live:
// the server answers with the page's main part only) and swaps in each [data-live] region by
// id. A region is left as it is while it holds the focused element, a text selection or a
// form someone has typed in; ticked checkboxes are ticked again in the new region (by name
// and value, e.g. call ids). "Updated hh:mm:ss" says when the shown data was read; when
// refreshes fail, a warning says since when.
"use strict";
(() => {
  const status = document.getElementById("live-status");
  if (!status) {
    return;
  }
  const every = Math.max(1, Number(status.dataset.every) || 5) * 1000;
  const stale = document.getElementById("live-stale");
  let failingSince = null;
  let timer = null;
  let running = false;
  let again = false;

  const clock = (date) => date.toISOString().slice(11, 19);

  // The element of the new region that stands where `element` stood in the old one.
  const twinOf = (element, fresh) => {
    if (element.id) {
      return fresh.querySelector(`[id="${CSS.escape(element.id)}"]`);
    }
    if (element.tagName === "INPUT" && element.name) {
      return fresh.querySelector(
        `input[name="${CSS.escape(element.name)}"][value="${CSS.escape(element.value)}"]`,
      );
    }
    if (element.tagName === "A" && element.getAttribute("href")) {
      return fresh.querySelector(`a[href="${CSS.escape(element.getAttribute("href"))}"]`);
    }
    return null;
  };

  // Where someone is working in a region: focus on a field, a selection, or edited fields.
  // Focus on a link, a button or a checkbox does not hold a region back: it moves to the same
  // element in the new region.
  const busy = (region, fresh) => {
    const active = document.activeElement;
    if (active && active !== document.body && region.contains(active)) {
      const movable =
        active.tagName === "A" ||
        active.tagName === "BUTTON" ||
        active.type === "checkbox" ||
        active.type === "radio";
      if (!movable || !twinOf(active, fresh)) {
        return true;
      }
    }
    const selection = window.getSelection();
    if (selection && !selection.isCollapsed && region.contains(selection.anchorNode)) {
      return true;
    }
    for (const field of region.querySelectorAll("input, textarea, select")) {
      if (field.type === "checkbox" || field.type === "radio") {
        continue; // carried over by keepChoices
      }
      if (field.tagName === "SELECT") {
        if ([...field.options].some((o) => o.selected !== o.defaultSelected)) {
          return true;
        }
      } else if (field.type !== "hidden" && field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  };

  // Tick again in the new region what was ticked in the old one (and untick what was not),
  // by name and value; open again what was open.
  const keepChoices = (old, fresh) => {
    for (const box of old.querySelectorAll("input[type=checkbox], input[type=radio]")) {
      const twin = box.name ? twinOf(box, fresh) : null;
      if (twin) {
        twin.checked = box.checked;
      }
    }
    for (const details of old.querySelectorAll("details[id]")) {
      const twin = fresh.querySelector(`details[id="${CSS.escape(details.id)}"]`);
      if (twin) {
        twin.open = details.open;
      }
    }
  };

  const swap = (doc) => {
    let waiting = 0;
    for (const region of document.querySelectorAll("[data-live][id]")) {
      const found = doc.getElementById(region.id);
      if (!found) {
        continue;
      }
      const fresh = document.importNode(found, true);
      if (busy(region, fresh)) {
        waiting += 1;
        region.setAttribute("data-live-waiting", "");
        continue;
      }
      keepChoices(region, fresh);
      const active = document.activeElement;
      const refocus = active && region.contains(active) ? twinOf(active, fresh) : null;
      region.replaceWith(fresh);
      if (refocus) {
        refocus.focus({ preventScroll: true });
      }
    }
    const updated = doc.getElementById("live-updated");
    const shown = document.getElementById("live-updated");
    if (updated && shown) {
      shown.replaceWith(document.importNode(updated, true));
    }
    status.toggleAttribute("data-live-waiting", waiting > 0);
    document.dispatchEvent(new CustomEvent("runwatch:live", { detail: { waiting } }));
  };

  const fail = (why) => {
    if (failingSince === null) {
      failingSince = new Date();
    }
    status.classList.add("is-stale");
    const message = `Not updating since ${clock(failingSince)} UTC: ${why}`;
    if (stale && (stale.hidden || stale.textContent !== message)) {
      stale.hidden = false;
      stale.textContent = message; // an alert: said once, not at every failed try
    }
  };

  const recover = () => {
    failingSince = null;
    status.classList.remove("is-stale");
    if (stale) {
      stale.hidden = true;
      stale.textContent = "";
    }
  };

  const schedule = (delay = every) => {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  };

  async function refresh() {
    if (document.hidden) {
      return; // visibilitychange starts again
    }
    if (running) {
      again = true; // the address changed under a refresh: ask again when it is back
      return;
    }
    running = true;
    const asked = window.location.href;
    const abort = new AbortController();
    const limit = setTimeout(() => abort.abort(), Math.max(every * 2, 10000));
    try {
      const answer = await fetch(asked, {
        headers: { "X-Runwatch-Live": "1" },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
        signal: abort.signal,
      });
      if (answer.status === 401 || answer.type === "opaqueredirect") {
        fail("your session has ended; reload the page to sign in again.");
      } else if (!answer.ok) {
        fail(`the collector answered ${answer.status}.`);
      } else {
        const doc = new DOMParser().parseFromString(await answer.text(), "text/html");
        if (asked === window.location.href) {
          swap(doc); // else the answer is to an older search: the next one follows at once
        }
        recover();
      }
    } catch (error) {
      fail(
        error.name === "AbortError"
          ? "the collector did not answer in time."
          : "the collector cannot be reached.",
      );
    } finally {
      clearTimeout(limit);
      running = false;
      if (again || asked !== window.location.href) {
        again = false;
        schedule(0);
      } else {
        schedule();
      }
    }
  }

  // Search as you type: a form marked data-live-search shows its results a moment after
  // the typing stops, in the page's live regions, and the address follows (without a new
  // history entry), so the next refresh, a reload or a bookmark keep the search. Enter and
  // the form's button still load the page as without script.
  for (const form of document.querySelectorAll("form[data-live-search]")) {
    let pause = null;
    const search = () => {
      const target = new URL(form.getAttribute("action") || "", window.location.href);
      const params = new URLSearchParams();
      for (const [name, value] of new FormData(form)) {
        if (String(value).trim() !== "") {
          params.append(name, String(value));
        }
      }
      target.search = params.toString();
      target.hash = window.location.hash;
      if (target.href !== window.location.href) {
        window.history.replaceState(window.history.state, "", target.href);
        schedule(0);
      }
    };
    form.addEventListener("input", (event) => {
      if (event.target.tagName === "INPUT") {
        clearTimeout(pause);
        pause = setTimeout(search, 400);
      }
    });
    form.addEventListener("change", (event) => {
      if (event.target.tagName === "SELECT") {
        clearTimeout(pause);
        search();
      }
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      schedule(0);
    }
  });
  schedule();
})();
