// The one JSON polling loop of the pages that wait for a row to change (a job's status, a result's evidence, a
// monitoring report's run): pollJson(url, {until, first, every, retry}) GETs the URL after `first` ms and hands
// the answer to until(answer); it asks again `every` ms later until that returns true, and `retry` ms after a
// failed request (the page keeps waiting through a restart of the web server).
(function () {
  "use strict";
  window.pollJson = function (url, options) {
    const o = Object.assign({first: 1000, every: 1000, retry: 3000}, options);
    function ask() {
      fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (answer) { if (!o.until(answer)) window.setTimeout(ask, o.every); })
        .catch(function () { window.setTimeout(ask, o.retry); });
    }
    window.setTimeout(ask, o.first);
  };
})();
