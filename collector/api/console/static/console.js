// runwatch console: ask before changes that cannot be undone (forms with data-confirm).
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The navigation link of the page shown is marked as the current one, for screen readers
// (aria-current) and the eye (console.css).
for (const link of document.querySelectorAll("header nav a")) {
  const target = link.getAttribute("href");
  const here = location.pathname;
  if (target === "/" ? here === "/" : here === target || here.startsWith(target + "/")) {
    link.setAttribute("aria-current", "page");
  }
}
