// The tab's outbox: every message gets a client_id before its first try and waits in
// sessionStorage (state.js) until the node takes it. If the node cannot be reached, it
// stays there, shown as waiting, and is sent again with the same client_id when the node
// is back: never lost, never twice.

import { ApiError, OfflineError, post } from './api.js';
import { announce } from './dom.js';
import { screen, scrollToEnd } from './screen.js';
import { outboxAll, outboxRemove, outboxUpdate } from './state.js';
import { applyMessage, drawPending } from './timeline.js';

let flushing = false;
let flushAgain = false;

/**
 * Sends what waits in the outbox, oldest first, one at a time. Called after every send and
 * whenever the node is reachable again (the stream opens). Stops at the first send the
 * node does not take for now (offline, locked, session ended): those wait for the next call.
 */
export async function flushOutbox() {
  if (flushing) {
    flushAgain = true;
    return;
  }
  flushing = true;
  try {
    do {
      flushAgain = false;
      const tried = new Set();
      for (let item = outboxAll()[0]; item && !tried.has(item.id); item = outboxAll()[0]) {
        tried.add(item.id);
        if (!(await sendItem(item))) break;
      }
    } while (flushAgain);
  } finally {
    flushing = false;
  }
}

/** One try: true once the item has left the outbox (taken, or refused for good). */
async function sendItem(item) {
  const body = { text: item.text, client_id: item.id };
  if (item.reply_to) body.reply_to = item.reply_to;
  let m;
  try {
    m = await post(`/api/conversations/${item.conversation}/messages`, body);
  } catch (error) {
    const later = error instanceof OfflineError
      || (error instanceof ApiError && (error.status === 401 || error.status === 423));
    if (later) {
      waitAll();
      return false;
    }
    outboxRemove(item);
    drawPending();
    screen.actions.giveBack(item, error); // the composer puts the text back in the box
    return true;
  }
  outboxRemove(item);
  applyMessage(m);
  drawPending();
  if (screen.view && screen.view.id === m.conversation) scrollToEnd(false);
  return true;
}

/** The node did not take the send: everything in the outbox now shows as waiting. */
function waitAll() {
  let changed = false;
  for (const item of outboxAll()) {
    if (!item.waiting) {
      outboxUpdate({ ...item, waiting: true });
      changed = true;
    }
  }
  if (changed) {
    drawPending();
    announce('Your message is queued: it is sent when your X Chat node is reachable again.');
  }
}
