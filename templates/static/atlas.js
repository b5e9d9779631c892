// Every page: the search box (`/` focuses it) and arrow keys that follow the data-* links on <body>.
// Layer pages: the tabs that switch grids, and the filter-number box. Filter pages: the overlay toggles.
// Without JavaScript, static/nojs.css shows what these would switch to and hides the search.
(function () {
  "use strict";

  // --- search: `block4_conv2/137`, `4_2/137`, `conv4_2 137`, `4_2 137`, `atlas/layer/filter`, `model/layer/filter`,
  // a pasted URL; a layer no atlas but another has goes to that one ---
  // The layers of an atlas come from <atlas>/search.json (site.search_index), fetched once, when first needed.

  var indexes = {};

  function loadIndex(root, atlas) {
    if (!indexes[atlas]) {
      indexes[atlas] = fetch(root + atlas + "/search.json").then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      });
      indexes[atlas].catch(function () { delete indexes[atlas]; });  // a later search tries again
    }
    return indexes[atlas];
  }

  function numbersOf(text) { return (text.match(/\d+/g) || []).map(Number).join("_"); }
  function wordsOf(text) { return text.toLowerCase().match(/[a-z]+/g) || []; }
  function folderOf(layer) { return layer.path.replace(/\/$/, "").split("/").pop().toLowerCase(); }

  // The layers a name stands for: the name itself (or its folder), else every layer with the same
  // numbers whose words begin with the words given (`4_2`, `conv4_2`, `b4c2` are block4_conv2).
  function matchLayers(text, layers) {
    var same = layers.filter(function (l) { return l.name === text; });
    if (same.length === 1) return same;
    var wanted = text.toLowerCase();
    var exact = layers.filter(function (l) { return l.name.toLowerCase() === wanted || folderOf(l) === wanted; });
    if (exact.length || !numbersOf(wanted)) return exact;
    var words = wordsOf(wanted);
    return layers.filter(function (l) {
      var own = wordsOf(l.name);
      return numbersOf(l.name) === numbersOf(wanted) && words.every(function (w) {
        return own.some(function (o) { return o.indexOf(w) === 0; });
      });
    });
  }

  function ranges(built) {
    return built.map(function (r) { return r[0] === r[1] ? String(r[0]) : r[0] + "–" + r[1]; }).join(", ");
  }

  function listed(layers) {
    var names = layers.map(function (l) { return l.name; });
    return names.length > 16 ? names.slice(0, 16).join(", ") + ", …" : names.join(", ");
  }

  // A model's name as typed or as atlas.json has it: `inception-v3` and `Inception_V3` are inception_v3.
  function modelKey(text) { return String(text).toLowerCase().replace(/-/g, "_"); }

  // The query as an atlas (or null: the page's own), a model named instead of an atlas (or null), a
  // layer name (or null) and a filter (or null). models: each atlas's model ({atlas: model}), if known.
  function parse(query, atlasNames, models) {
    var text = query.trim();
    var url = /^[a-z][a-z0-9+.-]*:\/\/[^\/]*/i;
    if (url.test(text)) text = text.replace(url, "").replace(/[?#].*$/, "");
    text = text.replace(/\/index\.html$/i, "");
    var tokens = text.split(/[\s\/:,#]+/).filter(function (t) { return t && !/^(filter|unit|channel)$/i.test(t); });
    var atlas = null, model = null;
    var modelNames = Object.keys(models || {}).map(function (a) { return modelKey(models[a]); });
    for (var i = 0; i < tokens.length - 1; i++) {
      if (atlasNames.indexOf(tokens[i].toLowerCase()) >= 0) {
        atlas = tokens[i].toLowerCase();
      } else if (modelNames.indexOf(modelKey(tokens[i])) >= 0) {
        model = modelKey(tokens[i]);
      } else {
        continue;
      }
      tokens = tokens.slice(i + 1);  // and whatever came before it: a pasted URL's base path
      break;
    }
    var filter = null;
    if (tokens.length && /^\d+$/.test(tokens[tokens.length - 1]) && (tokens.length > 1 || !(atlas || model))) {
      filter = Number(tokens.pop());
    }
    return { atlas: atlas, model: model, layer: tokens.length ? tokens.join("_") : null, filter: filter };
  }

  // The atlas a model's name stands for: the page's own if it is of that model, else the one atlas
  // of it, else the one named after it (its ImageNet atlas); null with a message when several remain.
  function atlasOfModel(model, context) {
    var of = context.atlases.filter(function (a) { return modelKey(context.models[a] || "") === model; });
    if (of.indexOf(context.atlas) >= 0) return { atlas: context.atlas };
    if (of.length === 1) return { atlas: of[0] };
    if (of.indexOf(model.replace(/_/g, "-")) >= 0) return { atlas: model.replace(/_/g, "-") };
    return { message: "This site has " + of.length + " atlases of " + model + ": " + of.join(", ") + "; give one of them, such as " + of[0] + "/…" };
  }

  // Resolves a query to {href} or {message}. context: {root, atlas, atlases, models, layer}, as on the form.
  function resolve(query, context) {
    var models = context.models || {};
    var wanted = parse(query, context.atlases, models);
    var example = "Type a layer and a filter, such as block1_conv1/3 or 1_1 3.";
    if (!query.trim()) return Promise.resolve({ message: example });
    if (wanted.model) {
      var chosen = atlasOfModel(wanted.model, { atlas: context.atlas, atlases: context.atlases, models: models });
      if (!chosen.atlas) return Promise.resolve({ message: chosen.message });
      wanted.atlas = chosen.atlas;
    }
    var atlas = wanted.atlas || context.atlas || context.atlases[0];
    if (!atlas) return Promise.resolve({ message: "This site has no atlas to search." });
    var layerName = wanted.layer || (wanted.atlas ? null : context.layer);
    return loadIndex(context.root, atlas).then(function (index) {
      if (!layerName) {
        return wanted.filter === null ? { href: context.root + atlas + "/index.html" }
          : { message: "Which layer? Give it with the filter, such as " + (index.layers[0] ? index.layers[0].name : "block1_conv1") + "/" + wanted.filter + "." };
      }
      var found = matchLayers(layerName, index.layers);
      if (found.length === 0 && !wanted.atlas) {
        // No such layer here: the one other atlas that has it, if exactly one does.
        return elsewhere(layerName, atlas, context).then(function (other) {
          return other ? toFilter(other.layer, wanted.filter, context.root)
            : { message: "No layer “" + layerName + "” in " + atlas + "; its layers are " + listed(index.layers) + "." };
        });
      }
      if (!found.length) return { message: "No layer “" + layerName + "” in " + atlas + "; its layers are " + listed(index.layers) + "." };
      if (found.length > 1) return { message: "“" + layerName + "” could be " + listed(found) + "; give the full name." };
      return toFilter(found[0], wanted.filter, context.root);
    }, function () {
      return { message: location.protocol === "file:"
        ? "Search needs the site served over HTTP (atlasgen serve, or any static host); browse from the layer pages."
        : "The search index " + atlas + "/search.json could not be loaded; browse from the layer pages." };
    });
  }

  // The layer of another atlas than `atlas` that `layerName` names, if exactly one other atlas has one; else null.
  function elsewhere(layerName, atlas, context) {
    var others = context.atlases.filter(function (a) { return a !== atlas; });
    return Promise.all(others.map(function (other) {
      return loadIndex(context.root, other).then(function (index) {
        var found = matchLayers(layerName, index.layers);
        return found.length === 1 ? { atlas: other, layer: found[0] } : null;
      }, function () { return null; });
    })).then(function (hits) {
      hits = hits.filter(Boolean);
      return hits.length === 1 ? hits[0] : null;
    });
  }

  // A layer's page, or one of its filter's pages: {href} or {message}.
  function toFilter(layer, n, root) {
    if (n === null) return { href: root + layer.path + "index.html" };
    if (n >= layer.filters) return { message: layer.name + " has " + layer.filters + " filters, numbered 0–" + (layer.filters - 1) + "." };
    var pages = layer.pages || {};
    if (pages[n]) return { href: root + pages[n] + "index.html" };
    var built = layer.built.some(function (r) { return r[0] <= n && n <= r[1]; });
    if (built) return { href: root + layer.path + n + "/index.html" };
    var shown = ranges(layer.built) + (Object.keys(pages).length ? ", " + Object.keys(pages).join(", ") : "");
    return { message: "Filter " + n + " of " + layer.name + " is not in this atlas" + (shown ? "; it shows filters " + shown : "") + "." };
  }

  // Each atlas's model, from the form's data-models (JSON: {atlas: model}); {} if absent or unreadable.
  function modelsOf(form) {
    try { return JSON.parse(form.getAttribute("data-models") || "{}") || {}; } catch (error) { return {}; }
  }

  function contextOf(form) {
    var search = document.querySelector(".search form");
    var source = search || form;
    return {
      root: source.getAttribute("data-root") || "",
      atlas: source.getAttribute("data-atlas"),
      atlases: (source.getAttribute("data-atlases") || "").split(" ").filter(Boolean),
      models: modelsOf(source),
      layer: form.getAttribute("data-layer") || source.getAttribute("data-layer"),
    };
  }

  function wire(form, queryOf) {
    var input = form.querySelector("input");
    var message = form.querySelector("output");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      resolve(queryOf(input.value), contextOf(form)).then(function (result) {
        if (result.href) { window.location.href = result.href; return; }
        message.textContent = result.message;
        input.setAttribute("aria-invalid", "true");
      });
    });
    input.addEventListener("input", function () { message.textContent = ""; input.removeAttribute("aria-invalid"); });
    // Fetch the index when the box is first used, so that Enter does not wait for it.
    input.addEventListener("focus", function () {
      var context = contextOf(form);
      var atlas = context.atlas || context.atlases[0];
      if (atlas) loadIndex(context.root, atlas).catch(function () {});
    }, { once: true });
  }

  var search = document.querySelector(".search form");
  if (search) wire(search, function (value) { return value; });
  var jump = document.querySelector("form.jump");
  if (jump) wire(jump, function (value) { return value.trim() === "" ? "" : jump.getAttribute("data-layer") + "/" + value.trim(); });
  window.atlasgenSearch = { parse: parse, resolve: resolve };

  // --- layer pages: switch between the grids ---
  var tabs = document.querySelectorAll(".tabs button");
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      tabs.forEach(function (other) { other.setAttribute("aria-selected", other === tab ? "true" : "false"); });
      document.querySelectorAll(".grid").forEach(function (grid) {
        grid.hidden = grid.getAttribute("data-view") !== tab.getAttribute("data-view");
      });
    });
  });

  // --- filter pages: each activation map's overlay swaps with its heatmap ---
  document.querySelectorAll(".overlay-toggle").forEach(function (button) {
    var ids = button.getAttribute("aria-controls").split(" ");
    button.addEventListener("click", function () {
      var overlay = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", overlay ? "true" : "false");
      document.getElementById(ids[0]).hidden = overlay;
      document.getElementById(ids[1]).hidden = !overlay;
    });
  });

  // --- keys: `/` to search; arrows follow the data-* links on <body> ---
  var keys = { ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up", ArrowDown: "down" };
  document.addEventListener("keydown", function (event) {
    var target = event.target && event.target.tagName;
    if (target === "INPUT" || target === "TEXTAREA" || target === "SELECT" || (event.target && event.target.isContentEditable)) return;
    if (event.altKey || event.ctrlKey || event.metaKey) return;
    // `/` may need Shift on some keyboards, so Shift is allowed for it.
    if (event.key === "/" && search) {
      event.preventDefault();
      search.querySelector("input").focus();
      return;
    }
    if (event.shiftKey) return;
    var href = document.body.getAttribute("data-" + keys[event.key]);
    if (keys[event.key] && href) { event.preventDefault(); window.location.href = href; }
  });
})();
