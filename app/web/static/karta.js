// Karta's own script: no inline script anywhere (the Content-Security-Policy forbids it), so the
// little behaviour pages need lives here. Every page works for reading without it.
(function () {
  "use strict";

  // htmx requests carry the session's CSRF token, as forms carry it in a hidden field.
  document.addEventListener("htmx:configRequest", function (event) {
    var token = document.body && document.body.dataset.csrf;
    if (token) { event.detail.headers["X-CSRF-Token"] = token; }
  });

  // Pictures the server could not draw (no Graphviz there) are drawn here from the same DOT, with the
  // vendored Viz.js (Graphviz as WebAssembly), loaded only when a page needs it.
  var vizLoading = null;
  function loadViz() {
    if (window.Viz) { return Promise.resolve(window.Viz); }
    if (!vizLoading) {
      vizLoading = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = "/ui/static/vendor/viz/viz-global.js";
        script.onload = function () { resolve(window.Viz); };
        script.onerror = function () { reject(new Error("Viz.js did not load")); };
        document.head.appendChild(script);
      });
    }
    return vizLoading;
  }

  function drawPictures(root) {
    var figures = (root || document).querySelectorAll('figure.picture[data-render="browser"]:not([data-drawn])');
    if (!figures.length) { return; }
    loadViz().then(function (Viz) { return Viz.instance(); }).then(function (viz) {
      figures.forEach(function (figure) {
        var source = figure.querySelector("pre.dot-source");
        var canvas = figure.querySelector(".picture-canvas");
        if (!source || !canvas) { return; }
        try {
          canvas.replaceChildren(viz.renderSVGElement(source.textContent));
          figure.setAttribute("data-drawn", "browser");
        } catch (error) {
          canvas.textContent = "The picture could not be drawn: " + error.message;
        }
      });
    }).catch(function (error) {
      figures.forEach(function (figure) {
        var canvas = figure.querySelector(".picture-canvas");
        if (canvas) { canvas.textContent = "The picture could not be drawn: " + error.message; }
      });
    });
  }

  // Buttons that copy a list (the owners to notify) to the clipboard: data-copy="ELEMENT-ID".
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) { return; }
    navigator.clipboard.writeText(source.textContent.trim()).then(function () {
      button.textContent = "Copied";
    });
  });

  // --- impact pages (change review, incident, root cause) ---
  // A ticked match of the type-ahead moves into the list of chosen CIs, so typing another search
  // (which replaces the matches) keeps it in the form.
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[type=checkbox][data-choose]") || !box.checked) { return; }
    var chosen = document.getElementById("chosen-" + box.dataset.choose);
    var item = box.closest("li");
    if (!chosen || !item) { return; }
    var none = chosen.querySelector("li.none");
    if (none) { none.remove(); }
    box.removeAttribute("data-choose");
    chosen.appendChild(item);
  });
  // --- end of impact pages ---

  document.addEventListener("DOMContentLoaded", function () { drawPictures(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawPictures(event.target); });
})();
