// What is on the main screen right now, shared by the chat modules (docs/web.md,
// "Modules"): the layout's fixed elements, the open conversation, and the actions.
//
// The modules import each other in one direction only (list and search, then messages,
// timeline, outbox, composer, conversation; panels and settings above them; app.js on
// top). Where a lower module must call a higher one (a message's menu replies, edits or
// blocks), it calls `screen.actions`, which app.js and conversation.js fill in.

export const screen = {
  els: null, // { layout, list, results, search, chat }
  view: null, // the open conversation (conversation.js, makeView)
  actions: {}, // open, card, newChat, settings, contactInfo, rename, verify, setContactState,
  // react, remove, retry, reply, edit, jump, giveBack
};

/** The open conversation's id, or null. */
export function openId() {
  return screen.view ? screen.view.id : null;
}

export function nearBottom() {
  const s = screen.view.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

export function scrollToEnd(focus) {
  const view = screen.view;
  if (!view) return;
  view.scroller.scrollTop = view.scroller.scrollHeight;
  view.jump.hidden = true;
  if (focus) view.box.focus();
}
