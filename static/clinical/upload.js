// Upload page: show that the upload is being checked, and stop a second submit of the same file.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  form.addEventListener("submit", function () {
    document.getElementById("submit-upload").disabled = true;
    document.getElementById("upload-progress").hidden = false;
  });
})();
