// Layer pages: switch between the grids. Every page: arrow keys follow the data-* links on <body>.
(function () {
  var tabs = document.querySelectorAll(".tabs button");
  tabs.forEach(function (tab) {
    tab.addEventListener("click", function () {
      tabs.forEach(function (other) { other.setAttribute("aria-selected", other === tab ? "true" : "false"); });
      document.querySelectorAll(".grid").forEach(function (grid) {
        grid.hidden = grid.getAttribute("data-view") !== tab.getAttribute("data-view");
      });
    });
  });
  var keys = { ArrowLeft: "prev", ArrowRight: "next", ArrowUp: "up", ArrowDown: "down" };
  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
    var target = event.target && event.target.tagName;
    if (target === "INPUT" || target === "TEXTAREA") return;
    var href = document.body.getAttribute("data-" + keys[event.key]);
    if (keys[event.key] && href) { event.preventDefault(); window.location.href = href; }
  });
})();
