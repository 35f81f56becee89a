// The calendar's dragging: drop a post on another day to move it there at the same wall time.
// The page works without it: every movable post has a "Move" form posting to the same place.
"use strict";

Kairos.onReady.push(() => {
  const calendar = document.getElementById("calendar");
  if (!calendar) return;
  const status = document.getElementById("calendar-status");
  const alert = document.getElementById("calendar-alert");
  let dragged = null;

  const say = (region, message) => {
    status.textContent = "";
    alert.textContent = "";
    region.textContent = message;
  };
  const dayOf = (element) => element && element.closest(".cal-day[data-date]");
  const clearTargets = () => {
    calendar.querySelectorAll(".drop-target").forEach((day) => day.classList.remove("drop-target"));
  };

  // A chip whose Move form is open is not draggable: in a draggable element, pressing in the
  // field would start a drag instead of placing the cursor (Firefox).
  calendar.addEventListener("toggle", (event) => {
    const chip = event.target.closest && event.target.closest(".chip.movable");
    if (chip) chip.draggable = !event.target.open;
  }, true);

  calendar.addEventListener("dragstart", (event) => {
    const chip = event.target.closest && event.target.closest(".chip.movable");
    if (!chip) return;
    dragged = chip;
    chip.classList.add("dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", chip.dataset.postId);
  });

  calendar.addEventListener("dragend", () => {
    if (dragged) dragged.classList.remove("dragging");
    dragged = null;
    clearTargets();
  });

  calendar.addEventListener("dragover", (event) => {
    const day = dayOf(event.target);
    if (!dragged || !day) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    if (!day.classList.contains("drop-target")) {
      clearTargets();
      day.classList.add("drop-target");
    }
  });

  calendar.addEventListener("drop", async (event) => {
    const day = dayOf(event.target);
    const chip = dragged;
    clearTargets();
    if (!chip || !day) return;
    event.preventDefault();
    const from = dayOf(chip);
    if (from === day) return;

    // Show the move at once; put the chip back where it was if the api refuses it.
    const home = chip.parentElement;
    const before = chip.nextElementSibling;
    let list = day.querySelector(".cal-entries");
    const madeList = !list;
    if (madeList) {
      list = document.createElement("ul");
      list.className = "cal-entries";
      day.appendChild(list);
    }
    list.appendChild(chip);
    chip.classList.add("moving");

    const body = new URLSearchParams({
      post_id: chip.dataset.postId,
      date_time: `${day.dataset.date}T${chip.dataset.time}`,
      // Days moved: the server keeps the post's own zone and wall time, moved by as many days.
      days: String(Math.round((Date.parse(day.dataset.date) - Date.parse(from.dataset.date)) / 86400000)),
      expected_revision: chip.dataset.revision,
      view: calendar.dataset.view,
      date: calendar.dataset.anchor,
    });
    let response = null;
    try {
      response = await Kairos.send(calendar.dataset.reschedule, { method: "POST", body });
    } catch (failure) {
      response = null;
    }
    if (response && Kairos.signedOut(response)) return;
    if (response && response.ok) {
      calendar.innerHTML = await response.text();
      say(status, "The post is rescheduled.");
      return;
    }
    chip.classList.remove("moving");
    home.insertBefore(chip, before);
    if (madeList) list.remove();
    const message = response ? await response.text() : "";
    say(alert, `The post was not moved: ${message || "the console could not be reached."}`);
    // Someone changed the post meanwhile: show it as it is now, so the next drag can succeed.
    if (response && response.status === 409) Kairos.refresh(calendar, calendar.dataset.days);
  });
});
