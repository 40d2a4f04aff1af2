/* reportgen report interactions: method switch, token hover with window sums (seed 001 eqs. 4-5).
   No network, no globals besides this IIFE; data comes from JSON script blocks (type application/json). */
(function () {
  "use strict";
  var POS = [178, 24, 43], NEG = [33, 102, 172], UNS = [217, 95, 2], MAX_ALPHA = 0.85;

  function own(container, selector) {
    return Array.prototype.filter.call(container.querySelectorAll(selector), function (el) {
      return el.closest(".switchable") === container;
    });
  }

  function resizePlots(root) {
    if (!window.Plotly || !window.Plotly.Plots) { return; }
    root.querySelectorAll(".plotly-graph-div").forEach(function (d) {
      try { window.Plotly.Plots.resize(d); } catch (e) { /* not drawn yet */ }
    });
  }

  function setupSwitch(container) {
    var buttons = own(container, ".switch button[data-key]");
    var views = own(container, ".view[data-key]");
    buttons.forEach(function (b) {
      b.addEventListener("click", function () {
        var key = b.getAttribute("data-key");
        buttons.forEach(function (o) { o.setAttribute("aria-pressed", o === b ? "true" : "false"); });
        views.forEach(function (v) {
          var show = v.getAttribute("data-key") === key;
          if (show) { v.removeAttribute("hidden"); resizePlots(v); } else { v.setAttribute("hidden", ""); }
        });
      });
    });
  }

  function rgba(rgb, s) {
    var a = Math.round(MAX_ALPHA * s * 1000) / 1000;
    return a > 0 ? "rgba(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + "," + a + ")" : "";
  }

  // Colour spans by values: signed -> diverging |v|/max|v|; unsigned -> eq. 7 min-max.
  function paint(spans, values, signed) {
    var ref = [];
    spans.forEach(function (sp, i) {
      var v = values[i];
      if (v !== null && isFinite(v) && !sp.classList.contains("special")) { ref.push(v); }
    });
    if (!ref.length) { values.forEach(function (v) { if (v !== null && isFinite(v)) { ref.push(v); } }); }
    var lo = Math.min.apply(null, ref), hi = Math.max.apply(null, ref);
    var m = Math.max(Math.abs(lo), Math.abs(hi));
    spans.forEach(function (sp, i) {
      var v = values[i], css = "";
      if (v !== null && isFinite(v) && ref.length && !sp.classList.contains("special")) {
        if (signed) {
          var s = m > 0 ? Math.max(-1, Math.min(1, v / m)) : 0;
          css = rgba(s >= 0 ? POS : NEG, Math.abs(s));
        } else {
          var u = hi > lo ? Math.max(0, Math.min(1, (v - lo) / (hi - lo))) : 0;
          css = rgba(UNS, u);
        }
      }
      sp.style.backgroundColor = css;
    });
  }

  function fmt(v) { return v === null || !isFinite(v) ? "n/a" : Number(v).toPrecision(4); }

  function setupHover(view, panel) {
    var holder = view.querySelector("script.attr-data");
    if (!holder) { return; }
    var data;
    try { data = JSON.parse(holder.textContent); } catch (e) { return; }
    var A = data.A, signed = !!data.signed;
    var inBox = view.querySelector('.tokens[data-side="in"]');
    var outBox = view.querySelector('.tokens[data-side="out"]');
    var info = view.querySelector(".hover-info");
    if (!inBox || !outBox || !A.length) { return; }
    var ins = Array.prototype.slice.call(inBox.querySelectorAll(".tok"));
    var outs = Array.prototype.slice.call(outBox.querySelectorAll(".tok"));
    var n = A.length, t = A[0].length;
    function saved(spans) { spans.forEach(function (s) { s.setAttribute("data-bg", s.style.backgroundColor || ""); }); }
    saved(ins); saved(outs);
    function windowSize() {
      var c = parseInt(panel.getAttribute("data-window") || "1", 10);
      return isFinite(c) && c > 0 ? c : 1;
    }
    function restore() {
      ins.concat(outs).forEach(function (s) {
        s.style.backgroundColor = s.getAttribute("data-bg");
        s.classList.remove("hovered"); s.classList.remove("in-window");
      });
      if (info) { info.textContent = ""; }
    }
    function onIn(k) {
      var h = Math.floor(windowSize() / 2), lo = Math.max(0, k - h), hi = Math.min(n - 1, k + h);
      var vals = [];
      for (var j = 0; j < t; j++) {
        var s = 0, any = false;
        for (var i = lo; i <= hi; i++) { var v = A[i][j]; if (v !== null) { s += v; any = true; } }
        vals.push(any ? s : null);
      }
      paint(outs, vals, signed);
      for (var q = lo; q <= hi; q++) { ins[q].classList.add("in-window"); }
      ins[k].classList.add("hovered");
      if (info) { info.textContent = "Response coloured by A(x" + k + ", c=" + windowSize() + "): how much input tokens " + lo + "–" + hi + " together contribute to each response token. Largest value " + fmt(Math.max.apply(null, vals.filter(function (x) { return x !== null; }))) + "."; }
    }
    function onOut(k) {
      var h = Math.floor(windowSize() / 2), lo = Math.max(0, k - h), hi = Math.min(t - 1, k + h);
      var vals = [];
      for (var i = 0; i < n; i++) {
        var s = 0, any = false;
        for (var j = lo; j <= hi; j++) { var v = A[i][j]; if (v !== null) { s += v; any = true; } }
        vals.push(any ? s : null);
      }
      paint(ins, vals, signed);
      for (var q = lo; q <= hi; q++) { outs[q].classList.add("in-window"); }
      outs[k].classList.add("hovered");
      if (info) { info.textContent = "Input coloured by A(y" + k + ", c=" + windowSize() + "): how much each input token contributes to response tokens " + lo + "–" + hi + " together."; }
    }
    function bind(box, spans, fn) {
      box.addEventListener("mouseover", function (ev) {
        var sp = ev.target.closest(".tok");
        if (!sp || !box.contains(sp)) { return; }
        var k = parseInt(sp.getAttribute("data-i"), 10);
        if (!(k >= 0 && k < spans.length)) { return; }
        restore(); fn(k);
      });
      box.addEventListener("mouseleave", restore);
    }
    if (ins.length === n && outs.length === t) { bind(inBox, ins, onIn); bind(outBox, outs, onOut); }
  }

  function setupWindow(panel) {
    var input = panel.querySelector("input.window");
    if (!input) { return; }
    var out = input.parentNode.querySelector("output");
    input.addEventListener("input", function () {
      panel.setAttribute("data-window", input.value);
      if (out) { out.textContent = input.value; }
    });
  }

  // On paper every method view is shown (report.css); open the collapsed score tables too.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.setAttribute("open", ""); });
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".switchable").forEach(setupSwitch);
    document.querySelectorAll("article.panel").forEach(function (panel) {
      setupWindow(panel);
      own(panel, ".method-view").forEach(function (v) { setupHover(v, panel); });
    });
  });
})();
