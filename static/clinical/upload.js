// Upload page: show that the upload is being checked, stop a second submit of the same file, and keep the chosen
// files when the upload is refused. Without JavaScript the form posts and the page is rendered again (the browser
// then forgets the files); with it, the form is sent with fetch() and only the error markup of the answer is put
// into the page, so the <input type=file> and its FileList, and every typed value, stay as they were.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.FormData || !window.DOMParser) return;
  const button = document.getElementById("submit-upload");
  const progress = document.getElementById("upload-progress");

  function busy(on) {
    button.disabled = on;
    progress.hidden = !on;
  }

  // The answer's errors replace the page's, part by part; the inputs are never touched.
  function showErrors(html) {
    const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("upload-form");
    if (!fresh) return false;
    const copy = function (from, to) {
      if (to) to.replaceChildren.apply(to, Array.from(from ? from.childNodes : []).map(function (n) {
        return document.importNode(n, true);
      }));
    };
    copy(fresh.querySelector(".form-errors"), form.querySelector(".form-errors"));
    form.querySelectorAll(".field[data-field]").forEach(function (field) {
      const answer = fresh.querySelector('.field[data-field="' + field.dataset.field + '"]');
      field.classList.toggle("has-error", !!(answer && answer.classList.contains("has-error")));
      copy(answer && answer.querySelector(".field-errors"), field.querySelector(".field-errors"));
    });
    const first = form.querySelector(".form-errors .error, .field.has-error");
    if (first) {
      first.scrollIntoView({block: "center"});
      const input = first.querySelector && first.querySelector("input, select");
      if (input) input.focus({preventScroll: true});
    }
    return true;
  }

  function sendFailed(message) {
    const box = form.querySelector(".form-errors");
    const p = document.createElement("p");
    p.className = "error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    box.replaceChildren(p);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    busy(true);
    fetch(form.action || window.location.href, {method: "POST", body: new FormData(form),
      credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        // Accepted: Django answers with a redirect to the result page, which fetch() has already followed.
        if (response.ok && response.redirected) { window.location.assign(response.url); return null; }
        return response.text().then(function (text) {
          busy(false);
          if (response.status === 400 && showErrors(text)) return;
          sendFailed("The upload could not be sent (HTTP " + response.status + "). Your file is still "
                     + "selected: try again, or ask IT if it keeps failing.");
        });
      })
      .catch(function () {
        busy(false);
        sendFailed("The upload could not be sent: the connection failed. Your file is still selected: try again.");
      });
  });
})();
