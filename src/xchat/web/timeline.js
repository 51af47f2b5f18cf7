// Changes to messages, from the stream or an API answer: the open conversation's history
// (in (sent_at, seq) order, never the relay's), the list's last message and unread count,
// read marks, and the sends still waiting below the history.

import { post } from './api.js';
import { announce, clear, dayKey, replace } from './dom.js';
import { renderList } from './list.js';
import { RANK, fillMessage, messageEl, pendingEl, refreshQuotes, renderMessages } from './messages.js';
import { conversationName } from './people.js';
import { nearBottom, screen, scrollToEnd } from './screen.js';
import { before, outboxOf, state } from './state.js';

/** A message from the stream or an API answer: update it or add it in order. */
export function applyMessage(m) {
  const latest = updateListFor(m);
  const view = screen.view;
  if (!view || view.id !== m.conversation || !view.loaded) return latest;
  const existing = view.msgs.get(m.id);
  if (existing) {
    if (RANK[existing.state] > RANK[m.state] && existing.state !== 'failed') m.state = existing.state;
    view.msgs.set(m.id, m);
    const li = view.els.get(m.id);
    if (li) fillMessage(li, m);
    refreshQuotes(m);
    return false;
  }
  const wasNear = nearBottom();
  insertInOrder(m);
  if ([...view.pendingEl.children].some((li) => li.dataset.pending === m.id)) drawPending();
  if (m.outgoing || wasNear) scrollToEnd(false);
  else view.jump.hidden = false;
  return true;
}

function insertInOrder(m) {
  const view = screen.view;
  const list = view.listEl;
  if (!view.newest || !before(m, view.newest)) {
    const lastDay = view.newest ? dayKey(view.newest.sent_at) : null;
    if (list.querySelector('.list-empty')) clear(list);
    list.appendChild(renderMessages([m], lastDay));
    return;
  }
  if (view.oldest && before(m, view.oldest) && view.hasMore) return; // older than what is loaded
  let after = null;
  for (const other of view.msgs.values()) {
    if (before(other, m) && (!after || before(after, other))) after = other;
  }
  const li = messageEl(m);
  if (after) view.els.get(after.id).after(li);
  else list.insertBefore(li, list.firstChild);
}

export function applyState(event) {
  for (const conv of state.conversations.values()) {
    if (conv.last_message && conv.last_message.id === event.id) {
      conv.last_message = { ...conv.last_message, state: event.state };
    }
  }
  const view = screen.view;
  if (!view) return;
  const m = view.msgs.get(event.id);
  if (!m) return;
  if (RANK[event.state] < RANK[m.state] && !(m.state === 'failed' && event.state === 'queued')) return;
  m.state = event.state;
  m.state_detail = event.detail;
  const li = view.els.get(event.id);
  if (li) fillMessage(li, m);
}

export function applyRead(event) {
  const conv = state.conversations.get(event.conversation);
  if (conv) conv.unread = 0;
  renderList();
  const view = screen.view;
  if (!view || view.id !== event.conversation) return;
  for (const id of event.ids) {
    const m = view.msgs.get(id);
    if (m) m.state = 'read';
  }
}

/** Keeps the list's last message, time and unread count; true for a new latest message. */
function updateListFor(m) {
  const conv = state.conversations.get(m.conversation);
  if (!conv) return false;
  const last = conv.last_message;
  let latest = false;
  if (last && last.id === m.id) conv.last_message = m;
  else if (!last || before(last, m)) {
    latest = true;
    conv.last_message = m;
    conv.last_activity = Math.max(conv.last_activity || 0, m.outgoing ? m.sent_at : m.received_at);
    const view = screen.view;
    const visible = view && view.id === m.conversation && document.visibilityState === 'visible';
    if (!m.outgoing && !visible) conv.unread = (conv.unread || 0) + 1;
  }
  renderList();
  return latest;
}

/** A new incoming message: say it, and mark it read if its conversation is on screen. */
export function incoming(m) {
  announce(`${conversationName(m.conversation)}: ${m.body}`);
  if (screen.view && screen.view.id === m.conversation) markReadSoon();
}

let readTimer = 0;
export function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 150);
}

async function markRead() {
  const view = screen.view;
  if (!view || !view.loaded || document.visibilityState !== 'visible') return;
  const id = view.id;
  const conv = state.conversations.get(id);
  // A message request is read only once accepted: then the sender gets a read receipt.
  if (view.requestState() !== 'accepted') return;
  const unseen = [...view.msgs.values()].some((m) => !m.outgoing && m.state === 'received');
  if (!unseen && !(conv && conv.unread)) return;
  try {
    await post(`/api/conversations/${id}/read`);
    if (conv) conv.unread = 0;
    const now = screen.view;
    for (const m of now && now.id === id ? now.msgs.values() : []) {
      if (!m.outgoing && m.state === 'received') m.state = 'read';
    }
    renderList();
  } catch {
    // tried again on the next message or reconnect
  }
}

/** The open conversation's waiting sends, below its messages. */
export function drawPending() {
  const view = screen.view;
  if (!view) return;
  const items = outboxOf(view.id).filter((item) => item.waiting && !view.msgs.has(item.id));
  const had = view.pendingEl.children.length;
  replace(view.pendingEl, items.map(pendingEl));
  if (items.length > had) scrollToEnd(false);
}
