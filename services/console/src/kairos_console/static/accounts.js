// The connect form shows only the credential fields the chosen platform uses. Without this
// script every field shows, each with a hint naming the platforms that use it.
"use strict";

Kairos.onReady.push(() => {
  const form = document.querySelector("[data-credentials-form]");
  if (!form) return;
  const choice = form.querySelector("[data-platform-choice]");
  const fields = form.querySelectorAll(".field[data-platforms]");
  const show = () => {
    const platform = choice.value;
    fields.forEach((field) => {
      const users = field.dataset.platforms.split(" ").filter(Boolean);
      // A field in error stays in sight, whatever the choice.
      const invalid = field.classList.contains("invalid");
      field.hidden = Boolean(platform) && users.length > 0 && !users.includes(platform) && !invalid;
      // What a hidden field holds is not sent: another platform's values do not belong here.
      field.querySelectorAll("input").forEach((input) => { input.disabled = field.hidden; });
    });
  };
  choice.addEventListener("change", show);
  show();
});
