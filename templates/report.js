/* reportgen report interactions: plotly.js loading (gzip, DecompressionStream), figures created as they
   scroll into view, exact values on downsampled heatmaps, the sortable index, collapsed prompts, method
   switch, token hover with window sums (seed 001 eqs. 4-5).
   No network, no globals besides this IIFE (and Plotly); data comes from script blocks the page does not run. */
(function () {
  "use strict";
  var POS = [178, 24, 43], NEG = [33, 102, 172], UNS = [217, 95, 2], MAX_ALPHA = 0.85;
  var THROTTLE_CELLS = 20000;

  // ---- plotly.js: packed gzip text (reportgen.render.pack7) -> bytes -> DecompressionStream -> script
  var PACK_ESCAPED = [0, 13, 60];

  function unpack7(text, size) {
    var out = new Uint8Array(size), acc = 0, bits = 0, o = 0;
    function put(v) {
      acc = (acc << 7) | v; bits += 7;
      if (bits >= 8) { bits -= 8; if (o < size) { out[o++] = (acc >> bits) & 255; } acc &= (1 << bits) - 1; }
    }
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      if (c < 128) { put(c); } else { c -= 128; put(PACK_ESCAPED[c >> 7]); put(c & 127); }
    }
    if (o !== size) { throw new Error("packed plotly.js is truncated"); }
    return out;
  }

  function gunzip(bytes) {
    return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
  }

  function canDecompress() {
    return typeof DecompressionStream === "function" && typeof Response === "function" &&
      typeof Blob === "function" && typeof Blob.prototype.stream === "function";
  }

  function loadPlotly() {
    if (window.Plotly) { return Promise.resolve(window.Plotly); }
    var el = document.getElementById("plotly-packed");
    if (!el) { return Promise.reject(new Error("this file holds no plotly.js")); }
    if (!canDecompress()) { return Promise.reject(new Error("it has no DecompressionStream (gzip)")); }
    return Promise.resolve().then(function () {
      return gunzip(unpack7(el.textContent, parseInt(el.getAttribute("data-bytes"), 10)));
    }).then(function (js) {
      var s = document.createElement("script");
      s.textContent = js;  // an inline script: allowed by the page's CSP, like every other script here
      document.head.appendChild(s);
      if (!window.Plotly) { throw new Error("plotly.js did not start"); }
      if (window.performance && performance.mark) { performance.mark("reportgen:plotly-ready"); }
      return window.Plotly;
    });
  }

  function figuresUnavailable(err) {
    var box = document.getElementById("figures-unavailable");
    if (!box) { return; }
    var why = box.querySelector(".why");
    if (why) { why.textContent = String(err && err.message ? err.message : err); }
    box.removeAttribute("hidden");
    document.documentElement.setAttribute("data-figures", "unavailable");
  }

  // ---- figures: created from their script's JSON when their <div> scrolls into view
  function figureArgs(div) {
    var holder = div.nextElementSibling;
    if (!holder || !holder.classList.contains("figure-data")) { return null; }
    var s = holder.textContent;  // the call Plotly.newPlot with JSON arguments: id, data, layout, config
    return JSON.parse("[" + s.slice(s.indexOf("(") + 1, s.lastIndexOf(")")) + "]");
  }

  // Each layout template is in the page once; a figure's layout names its own.
  var templates = null;
  function layoutTemplate(name) {
    if (templates === null) {
      var el = document.getElementById("plotly-templates");
      templates = el ? JSON.parse(el.textContent) : {};
    }
    return templates[name] || {};
  }

  function createFigure(div) {
    if (div.hasAttribute("data-drawn")) { return; }
    div.setAttribute("data-drawn", "pending");
    var a = figureArgs(div);
    if (!a) { return; }
    var P = window.Plotly;
    if (a[2] && typeof a[2].template === "string") { a[2].template = layoutTemplate(a[2].template); }
    P.newPlot(div, a[1], a[2], a[3]).then(function () {
      div.setAttribute("data-drawn", "yes");
      var meta = a[2] && a[2].meta;
      if (meta && meta.blocks && meta.shape) { setupExactHover(div, meta); }
    });
  }

  function lazyFigures() {
    var divs = document.querySelectorAll("div.lazy-figure");
    if (typeof IntersectionObserver !== "function") {
      divs.forEach(createFigure);
      document.documentElement.setAttribute("data-figures", "ready");
      return;
    }
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting) { io.unobserve(e.target); createFigure(e.target); }
      });
    }, { rootMargin: "400px 0px" });
    divs.forEach(function (d) { io.observe(d); });
    document.documentElement.setAttribute("data-figures", "ready");
    window.addEventListener("beforeprint", function () { divs.forEach(createFigure); });
  }

  // ---- exact values under a downsampled heatmap: the one full copy of each matrix is the method
  // view's hover data, or else the run's results.json in the evidence block (decoded once).
  var evidenceResults = null;

  function loadEvidence() {
    if (evidenceResults) { return evidenceResults; }
    evidenceResults = Promise.resolve().then(function () {
      var block = JSON.parse(document.getElementById("reportgen-evidence").textContent).results;
      if (block.encoding === "utf-8") { return block.data; }
      var bin = atob(block.data), bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
      return gunzip(bytes);
    }).then(function (text) { return JSON.parse(text).results || []; });
    return evidenceResults;
  }

  function fullMatrix(view, n, t) {
    if (!view) { return Promise.reject(new Error("no method view")); }
    var own = viewMatrix(view);
    if (own) { return Promise.resolve(own.A); }
    var model = view.getAttribute("data-model"), prompt = view.getAttribute("data-prompt"), label = view.getAttribute("data-label");
    return loadEvidence().then(function (results) {
      for (var i = 0; i < results.length; i++) {
        var r = results[i];
        if (r.model === model && r.prompt === prompt && (r.label || r.method) === label && r.attribution) {
          var raw = r.attribution.raw;  // per token: it is this heatmap's matrix only when the shapes agree
          if (raw && raw.length === n && raw[0] && raw[0].length === t) { return raw; }
        }
      }
      throw new Error("the matrix is not in the embedded results");
    });
  }

  // a token on its own in a line of text: its spaces shown as ␣ (a leading space would collapse),
  // the line break after ⏎ dropped, as in the report's tables and axis labels
  function tokenText(view, side, i) {
    var sp = view && view.querySelector('.tokens[data-side="' + side + '"] .tok[data-i="' + i + '"]');
    return sp ? sp.textContent.replace(/\n/g, "").replace(/ /g, "\u2423") : "";
  }

  function setupExactHover(div, meta) {
    var view = div.closest(".method-view");
    var fr = meta.blocks[0], fc = meta.blocks[1], n = meta.shape[0], t = meta.shape[1];
    var nbr = Math.ceil(n / fr), nbc = Math.ceil(t / fc);
    var label = document.createElement("div");
    label.className = "exact-hover muted small";
    label.setAttribute("aria-live", "polite");
    label.textContent = "Hover the heatmap for a cell's exact value.";
    div.parentNode.insertBefore(label, div.nextSibling);
    var A = null, pending = null, lastKey = "";
    fullMatrix(view, n, t).then(function (m) { A = m; if (pending) { requestAnimationFrame(update); } }, function (err) {
      label.textContent = "Exact values are not available here: " + err.message + ".";
    });
    function cell(ev) {
      var drag = div.querySelector(".nsewdrag");
      if (!drag) { return null; }
      var box = drag.getBoundingClientRect();
      var fx = (ev.clientX - box.left) / box.width, fy = (ev.clientY - box.top) / box.height;
      if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) { return null; }
      var bi = Math.floor(fy * nbr), bj = Math.floor(fx * nbc);  // y axis reversed: row 0 on top
      var i = Math.min(n - 1, bi * fr + Math.floor((fy * nbr - bi) * fr), (bi + 1) * fr - 1);
      var j = Math.min(t - 1, bj * fc + Math.floor((fx * nbc - bj) * fc), (bj + 1) * fc - 1);
      return [i, j];
    }
    function update() {
      var ev = pending;
      if (!ev) { return; }
      if (!A) { label.textContent = "Loading the exact values…"; return; }
      pending = null;
      var c = cell(ev);
      if (!c) { return; }
      var key = c[0] + "," + c[1];
      if (key === lastKey) { return; }
      lastKey = key;
      var v = A[c[0]] ? A[c[0]][c[1]] : null;
      label.setAttribute("data-cell", key);
      label.textContent = "input " + c[0] + ": " + tokenText(view, "in", c[0]) + " · output " + c[1] + ": " +
        tokenText(view, "out", c[1]) + " · A = " + (v === null || v === undefined ? "n/a" : String(v)) + " (exact cell; the colour is its " + fr + "×" + fc + " block's mean)";
    }
    div.addEventListener("mousemove", function (ev) {
      var first = !pending;
      pending = ev;
      if (first) { requestAnimationFrame(update); }
    });
  }

  // ---- index table: sort by a column; links open collapsed prompts
  function setupSort(table) {
    var heads = Array.prototype.slice.call(table.querySelectorAll("thead th"));
    var body = table.tBodies[0];
    heads.forEach(function (th, col) {
      th.setAttribute("tabindex", "0");
      th.setAttribute("aria-sort", "none");
      function sort() {
        var num = th.getAttribute("data-sort") === "num", now = th.getAttribute("aria-sort");
        var asc = now === "none" ? !num : now !== "ascending";  // numbers: largest first on the first click
        var rows = Array.prototype.slice.call(body.rows);
        function key(r) {
          var td = r.cells[col];
          return num ? parseFloat(td.getAttribute("data-value")) : td.textContent.trim().toLowerCase();
        }
        rows.sort(function (a, b) {
          var x = key(a), y = key(b);
          return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
        });
        rows.forEach(function (r) { body.appendChild(r); });
        heads.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      }
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); sort(); } });
    });
  }

  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1));
    var el = id && document.getElementById(id);
    for (var d = el; d; d = d.parentElement) {
      if (d.tagName === "DETAILS" && !d.open) { d.open = true; }
    }
    if (el) { el.scrollIntoView(); }
  }

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

  // The matrix a method view re-colours tokens from: its hover data, which names the view's heatmap
  // when that heatmap shows the same matrix cell for cell (one copy of the numbers in the page).
  function viewMatrix(view) {
    var holder = view && view.querySelector("script.attr-data");
    if (!holder) { return null; }
    var data = JSON.parse(holder.textContent);
    if (data.A) { return { A: data.A, signed: !!data.signed }; }
    var div = data.from ? document.getElementById(data.from) : null;
    var args = div ? figureArgs(div) : null;
    var z = args && args[1] && args[1][0] ? args[1][0].z : null;
    return Array.isArray(z) ? { A: z, signed: !!data.signed } : null;
  }

  // Token hover is set up on the first pointer over a view's tokens (nothing is parsed at load).
  function setupHover(view, panel) {
    if (!view.querySelector("script.attr-data")) { return; }
    var over = null;
    view.addEventListener("mouseover", function (ev) {
      if (over === null) {
        try { over = hoverHandler(view, panel) || false; } catch (e) { over = false; }
      }
      if (over) { over(ev); }
    });
  }

  function hoverHandler(view, panel) {
    var data = viewMatrix(view);
    if (!data) { return null; }
    var A = data.A, signed = data.signed;
    var inBox = view.querySelector('.tokens[data-side="in"]');
    var outBox = view.querySelector('.tokens[data-side="out"]');
    var info = view.querySelector(".hover-info");
    if (!inBox || !outBox || !A.length) { return null; }
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
    if (ins.length !== n || outs.length !== t) { return null; }
    inBox.addEventListener("mouseleave", restore);
    outBox.addEventListener("mouseleave", restore);
    // Large matrices: at most one re-colouring per animation frame (the last token hovered wins).
    var throttle = n * t > THROTTLE_CELLS, queued = null;
    function show(fn, k) { restore(); fn(k); }
    return function (ev) {
      var sp = ev.target.closest(".tok");
      var box = sp && (inBox.contains(sp) ? inBox : outBox.contains(sp) ? outBox : null);
      if (!box) { return; }
      var spans = box === inBox ? ins : outs, fn = box === inBox ? onIn : onOut;
      var k = parseInt(sp.getAttribute("data-i"), 10);
      if (!(k >= 0 && k < spans.length)) { return; }
      if (!throttle) { show(fn, k); return; }
      var first = !queued;
      queued = function () { show(fn, k); };
      if (first) { requestAnimationFrame(function () { var f = queued; queued = null; if (f) { f(); } }); }
    };
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

  // ---- method blending (seed 001 §4.4) and the eq. 10 mean: reportgen.report.blend computes the
  // intensities; blendRgba is its blend_rgba (intensity-weighted mean colour, opacity from the largest).
  function blendRgba(ss, colours) {
    var tot = 0, top = 0, rgb = [0, 0, 0];
    ss.forEach(function (s, m) {
      if (s === null || !(s > 0)) { return; }
      tot += s; top = Math.max(top, s);
      for (var k = 0; k < 3; k++) { rgb[k] += s * colours[m][k]; }
    });
    if (!(tot > 0)) { return ""; }
    var a = Math.round(MAX_ALPHA * top * 1000) / 1000;
    return "rgba(" + rgb.map(function (c) { return Math.round(c / tot); }).join(",") + "," + a + ")";
  }

  // Eq. 10 over the methods on (reportgen.report.blend.mean_of): in each part (cells where the same
  // methods are finite), the mean of the row / column sums of those of its methods that are on, summed.
  function meanOf(parts, on, side, length) {
    var out = [];
    for (var i = 0; i < length; i++) { out.push(null); }
    parts.forEach(function (q) {
      var active = [];
      q.m.forEach(function (f, k) { if (on[f]) { active.push(k); } });
      if (!active.length) { return; }
      for (var i = 0; i < length; i++) {
        if (q[side][active[0]][i] === null) { continue; }
        var s = 0;
        active.forEach(function (k) { s += q[side][k][i]; });
        out[i] = (out[i] || 0) + s / active.length;
      }
    });
    return out;
  }

  // Eq. 7 over the user's tokens, as reportgen.report.blend.view_intensities (4 decimals).
  function intensities(values, spans) {
    var ref = [];
    spans.forEach(function (sp, i) { if (values[i] !== null && !sp.classList.contains("special")) { ref.push(values[i]); } });
    var lo = Math.min.apply(null, ref), hi = Math.max.apply(null, ref);
    return values.map(function (v, i) {
      if (v === null || !ref.length || spans[i].classList.contains("special")) { return null; }
      return hi > lo ? Math.round((v - lo) / (hi - lo) * 1e4) / 1e4 : 0;
    });
  }

  // The colours at load are rendered in Python (the first two methods on); the data is read on the first change.
  function setupBlend(panel) {
    var box = panel.querySelector("details.blend");
    var holder = box && box.querySelector("script.blend-data");
    if (!holder) { return; }
    var data = null;
    var toggles = Array.prototype.slice.call(box.querySelectorAll("input.blend-method"));
    var mean = box.querySelector("input.blend-mean");
    var legend = box.querySelector(".blend-mean-of");
    var sides = { "in": box.querySelectorAll('.tokens[data-side="in"] .tok'), "out": box.querySelectorAll('.tokens[data-side="out"] .tok') };
    function paintBlend() {
      if (data === null) { data = JSON.parse(holder.textContent); }
      var useMean = mean.checked;
      var on = toggles.map(function (t) { return t.checked; });
      var names = toggles.filter(function (t) { return t.checked; }).map(function (t) { return t.getAttribute("data-label"); });
      Object.keys(sides).forEach(function (side) {
        var spans = Array.prototype.slice.call(sides[side]);
        var values = useMean ? meanOf(data.mean.parts, on, side, spans.length) : null;
        var ss = useMean ? intensities(values, spans) : null;
        spans.forEach(function (sp, i) {
          var base = sp.getAttribute("data-title") || sp.title;
          sp.setAttribute("data-title", base);
          if (useMean) {
            sp.style.backgroundColor = ss[i] === null ? "" : blendRgba([ss[i]], [data.mean.colour]);
            sp.title = base + " · mean of methods I = " + fmt(values[i]);
            return;
          }
          var sm = data[side][i].map(function (s, m) { return on[m] ? s : null; });
          sp.style.backgroundColor = blendRgba(sm, data.colours);
          sp.title = base + " · intensities " + data[side][i].map(function (s, m) { return data.keys[m] + " " + (s === null ? "n/a" : s); }).join(", ");
        });
      });
      if (legend) {
        legend.hidden = !useMean;
        legend.textContent = names.length ? "Mean of methods (eq. 10) over F\u2032 = {" + names.join(", ") + "}: toggle methods to change it." :
          "Mean of methods (eq. 10): no method is toggled on; toggle one or more to average them.";
      }
      box.setAttribute("data-blend", (useMean ? "mean:" : "") + data.keys.filter(function (k, m) { return on[m]; }).join("+"));
    }
    toggles.concat([mean]).forEach(function (t) { t.addEventListener("change", paintBlend); });
  }

  // ---- linguistic filter (seed 001 §4.5): part-of-speech / entity labels from reportgen.linguistics
  function setupLinguistics(panel) {
    var box = panel.querySelector(".ling-filter");
    var holder = box && box.querySelector("script.ling-data");
    if (!holder) { return; }
    var labels = null;  // read on the first change
    var table = panel.querySelector("table.ling-compare");
    function chosen(cls) {
      var sel = box.querySelector("select." + cls);
      return sel ? Array.prototype.filter.call(sel.options, function (o) { return o.selected; }).map(function (o) { return o.value; }) : [];
    }
    function apply() {
      if (labels === null) { labels = JSON.parse(holder.textContent); }
      var pos = chosen("ling-pos"), ent = chosen("ling-ent"), any = pos.length + ent.length > 0;
      var modeInput = box.querySelector(".ling-modes input:checked");
      var mode = modeInput ? modeInput.value : "highlight";
      panel.setAttribute("data-ling-mode", mode);
      panel.querySelectorAll(".tokens").forEach(function (tb) {
        var lab = labels[tb.getAttribute("data-side")], spans = tb.querySelectorAll(".tok");
        if (!lab || lab.length !== spans.length) { return; }
        spans.forEach(function (sp, i) {
          var hit = any && (pos.indexOf(lab[i][0]) >= 0 || ent.indexOf(lab[i][1]) >= 0);
          sp.classList.toggle("ling-on", mode === "highlight" && hit);
          sp.classList.toggle("ling-dim", mode === "highlight" && any && !hit);
          sp.classList.toggle("ling-off", mode === "isolate" && any && !hit);
        });
      });
      if (table) {
        if (mode === "compare") { table.removeAttribute("hidden"); } else { table.setAttribute("hidden", ""); }
        Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
          var list = r.getAttribute("data-kind") === "pos" ? pos : ent;
          r.hidden = any && list.indexOf(r.getAttribute("data-label")) < 0;
        });
      }
    }
    box.addEventListener("change", apply);
  }

  // ---- synchronised hover in the model comparison (reportgen.report.comparison.sync_hover) ----
  // Each unit's value and its aligned partner come from the view's script.sync-data (read on the first
  // hover or focus); hovering or focusing a unit outlines it and its partner and writes both values and
  // Δ = left − right under the view. Units are focusable for keyboard users.
  function setupSyncHover(view) {
    var grid = view.querySelector(".side-by-side[data-sync]");
    var holder = view.querySelector("script.sync-data");
    var readout = view.querySelector(".sync-readout");
    if (!grid || !holder || !readout) { return; }
    var data = null, lit = [], hint = readout.textContent;
    var names = { left: readout.getAttribute("data-left"), right: readout.getAttribute("data-right") };
    var other = { left: "right", right: "left" };
    grid.querySelectorAll(".tok").forEach(function (sp) { sp.setAttribute("tabindex", "0"); });
    function unitOf(el) {
      var sp = el && el.closest ? el.closest(".tok") : null;
      var box = sp && sp.closest(".tokens");
      var block = box && box.closest(".tokens-block[data-model]");
      if (!block || !grid.contains(block)) { return null; }
      return { span: sp, model: block.getAttribute("data-model"), kind: box.getAttribute("data-side"), i: parseInt(sp.getAttribute("data-i"), 10) };
    }
    function spanAt(model, kind, i) {
      return grid.querySelector('.tokens-block[data-model="' + model + '"] .tokens[data-side="' + kind + '"] .tok[data-i="' + i + '"]');
    }
    function clear() {
      lit.forEach(function (sp) { sp.classList.remove("sync-hovered"); sp.classList.remove("sync-partner"); });
      lit = [];
      readout.textContent = hint;
      ["data-unit", "data-left-value", "data-right-value", "data-delta"].forEach(function (a) { readout.removeAttribute(a); });
    }
    function show(u) {
      if (data === null) { data = JSON.parse(holder.textContent); }
      var mine = data[u.model][u.kind];
      if (!mine || !(u.i >= 0 && u.i < mine.v.length)) { return; }
      clear();
      u.span.classList.add("sync-hovered"); lit.push(u.span);
      var word = "\u2018" + u.span.textContent.trim() + "\u2019", j = mine.p[u.i];
      readout.setAttribute("data-unit", u.model + ":" + u.kind + ":" + u.i);
      if (j === null || j === undefined) {
        readout.textContent = word + " \u00b7 " + names[u.model] + " " + fmt(mine.v[u.i]) + " \u00b7 no counterpart in " + names[other[u.model]];
        return;
      }
      var partner = spanAt(other[u.model], u.kind, j);
      if (partner) { partner.classList.add("sync-partner"); lit.push(partner); }
      var vs = {};
      vs[u.model] = mine.v[u.i];
      vs[other[u.model]] = data[other[u.model]][u.kind].v[j];
      var l = vs.left, r = vs.right, d = l === null || r === null ? null : l - r;
      readout.setAttribute("data-left-value", String(l));
      readout.setAttribute("data-right-value", String(r));
      readout.setAttribute("data-delta", String(d));
      readout.textContent = word + " \u00b7 " + names.left + " " + fmt(l) + " \u00b7 " + names.right + " " + fmt(r) + " \u00b7 \u0394 " + fmt(d);
    }
    function on(ev) { var u = unitOf(ev.target); if (u) { show(u); } }
    grid.addEventListener("mouseover", on);
    grid.addEventListener("focusin", on);
    grid.addEventListener("mouseleave", clear);
    grid.addEventListener("focusout", function (ev) { if (!unitOf(ev.relatedTarget)) { clear(); } });
  }
  // ---- end of the synchronised hover ----

  // On paper every method view is shown (report.css); open the collapsed score tables too.
  window.addEventListener("beforeprint", function () {
    document.querySelectorAll("details").forEach(function (d) { d.setAttribute("open", ""); });
  });

  document.addEventListener("DOMContentLoaded", function () {
    loadPlotly().then(lazyFigures, figuresUnavailable);
    document.querySelectorAll("table.sortable").forEach(setupSort);
    window.addEventListener("hashchange", openTarget);
    if (location.hash) { openTarget(); }
    document.querySelectorAll(".switchable").forEach(setupSwitch);
    document.querySelectorAll("article.comparison .view").forEach(setupSyncHover);
    document.querySelectorAll("article.panel").forEach(function (panel) {
      setupWindow(panel);
      own(panel, ".method-view").forEach(function (v) { setupHover(v, panel); });
      setupBlend(panel);
      setupLinguistics(panel);
    });
  });
})();
