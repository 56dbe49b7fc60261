// The support form page: a character counter on the message, and one submission per click.
// Everything it checks, the server checks again; the page works without it.
(function () {
  "use strict";
  var area = document.getElementById("message");
  var out = document.getElementById("message-count");
  if (area && out) {
    var min = Number(area.getAttribute("data-min"));
    var max = Number(area.getAttribute("data-max"));
    var words = area.getAttribute("data-count") || "{n} / {max}";
    var show = function () {
      // Characters as the server counts them: Unicode code points after trimming.
      var n = Array.from(area.value.trim()).length;
      out.textContent = words.replace("{n}", String(n)).replace("{max}", String(max));
      out.className = (n > max || (n > 0 && n < min)) ? "count out" : "count";
    };
    area.addEventListener("input", show);
    show();
  }
  var form = document.getElementById("support-form");
  var button = document.getElementById("submit");
  if (form && button) {
    form.addEventListener("submit", function () {
      // The server files one request per form anyway (its token); this spares a second trip.
      window.setTimeout(function () { button.disabled = true; }, 0);
    });
  }
})();
