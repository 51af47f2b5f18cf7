// The composer: the message box, its reply/edit bar, the size counter, and sending.
//
// The size limit is the node's (GET /api/status: limits.text_bytes, UTF-8 bytes). The
// counter shows from half of it on and names the limit; a longer text is not sent: it
// stays in the box, with the reason said in words.

import { OfflineError, patch } from './api.js';
import { clear, h, icon, replace } from './dom.js';
import { flushOutbox } from './outbox.js';
import { conversationName, personName } from './people.js';
import { screen } from './screen.js';
import { before, loadDraft, newClientId, outboxAdd, saveDraft, state } from './state.js';
import { applyMessage } from './timeline.js';
import { errorText, toast } from './ui.js';

const DEFAULT_LIMIT = 32768;
const encoder = new TextEncoder();

export function textLimit() {
  const limits = state.status && state.status.limits;
  return (limits && limits.text_bytes) || DEFAULT_LIMIT;
}

function limitWords(limit) {
  return `${Math.floor(limit / 1024)} KiB (${limit.toLocaleString('en')} bytes)`;
}

/** Why `text` cannot be sent for its size, as a sentence, or ''. */
export function tooLong(text) {
  const size = encoder.encode(text).length;
  const limit = textLimit();
  if (size <= limit) return '';
  return `A message can be at most ${limitWords(limit)} of text; this one has ${size.toLocaleString('en')} bytes.`;
}

export function drawComposer() {
  const v = screen.view;
  const bar = h('div', { class: 'compose-bar', hidden: true });
  const counter = h('p', { class: 'byte-counter', id: 'byte-counter', hidden: true });
  const send = h('button', { type: 'submit', class: 'send' }, icon('send'), h('span', { class: 'label' }, 'Send'));
  send.setAttribute('aria-label', 'Send');
  const form = h('form', { class: 'compose-form', onsubmit: (e) => { e.preventDefault(); sendMessage(); } },
    v.box, send);
  replace(v.composer, bar, form, counter);
  v.bar = bar;
  v.counter = counter;
  v.box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendMessage();
    } else if (e.key === 'Escape' && (v.replyTo || v.editing)) {
      e.preventDefault();
      cancelCompose();
    } else if (e.key === 'ArrowUp' && !v.box.value && !v.editing) {
      const mine = [...v.msgs.values()].filter((m) => m.outgoing && !m.deleted).sort((a, b) => (before(a, b) ? -1 : 1));
      if (mine.length && v.forwardSecret()) {
        e.preventDefault();
        startEdit(mine[mine.length - 1].id);
      }
    }
  });
  v.box.addEventListener('input', () => {
    if (!v.editing) saveDraft(v.id, v.box.value);
    grow(v.box);
    count();
  });
  requestAnimationFrame(() => grow(v.box));
  count();
}

/** The byte counter: hidden for short texts, then "n of limit", then why it is too long. */
function count() {
  const v = screen.view;
  if (!v || !v.counter) return;
  const limit = textLimit();
  const size = encoder.encode(v.box.value).length;
  const counter = v.counter;
  counter.hidden = size < limit / 2;
  const over = size > limit;
  counter.classList.toggle('over', over);
  v.box.setAttribute('aria-invalid', over ? 'true' : 'false');
  if (over) v.box.setAttribute('aria-describedby', counter.id);
  else v.box.removeAttribute('aria-describedby');
  counter.setAttribute('role', over ? 'alert' : 'status');
  counter.textContent = over
    ? `Too long to send: ${size.toLocaleString('en')} bytes, the limit is ${limitWords(limit)}. Shorten it by ${(size - limit).toLocaleString('en')} bytes.`
    : `${size.toLocaleString('en')} of ${limit.toLocaleString('en')} bytes: a message can be at most ${Math.floor(limit / 1024)} KiB.`;
}

export function grow(box) {
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

export function drawBar() {
  const v = screen.view;
  const target = v.editing || v.replyTo;
  if (!target) {
    v.bar.hidden = true;
    clear(v.bar);
    return;
  }
  v.bar.hidden = false;
  const title = v.editing ? 'Editing message' : `Replying to ${target.outgoing ? 'yourself' : personName(target.sender)}`;
  replace(v.bar,
    h('div', { class: 'bar-text' }, h('strong', null, title), h('span', { class: 'quote-text' }, target.body.slice(0, 200))),
    h('button', { type: 'button', class: 'small', onclick: cancelCompose }, v.editing ? 'Cancel edit' : 'Cancel reply'));
}

export function startReply(id) {
  const v = screen.view;
  v.editing = null;
  v.replyTo = v.msgs.get(id);
  drawBar();
  v.box.focus();
}

export function startEdit(id) {
  const v = screen.view;
  const m = v.msgs.get(id);
  if (!m) return;
  if (!v.editing) v.stash = v.box.value; // the draft comes back after the edit
  v.replyTo = null;
  v.editing = m;
  v.box.value = m.body;
  grow(v.box);
  count();
  drawBar();
  v.box.focus();
}

function cancelCompose() {
  const v = screen.view;
  if (v.editing) {
    v.box.value = v.stash || '';
    v.stash = '';
  }
  v.replyTo = null;
  v.editing = null;
  saveDraft(v.id, v.box.value);
  drawBar();
  grow(v.box);
  count();
  v.box.focus();
}

async function sendMessage() {
  const v = screen.view;
  if (!v) return;
  const text = v.box.value;
  if (!text.trim()) return;
  const why = tooLong(text);
  if (why) {
    count();
    toast(`Not sent. ${why}`, { error: true });
    return;
  }
  const id = v.id;
  const reply = v.replyTo;
  const editing = v.editing;
  v.box.value = editing ? v.stash || '' : '';
  v.stash = '';
  v.replyTo = null;
  v.editing = null;
  saveDraft(id, v.box.value);
  drawBar();
  grow(v.box);
  count();
  if (!editing) {
    // The id is chosen before the first try: every later try sends the same message.
    outboxAdd({
      id: newClientId(), conversation: id, text, reply_to: reply ? reply.id : null,
      at: Date.now(), waiting: false,
    });
    flushOutbox();
    return;
  }
  try {
    applyMessage(await patch(`/api/messages/${editing.id}`, { text }));
  } catch (error) {
    // Nothing typed is lost: the edit goes back into the box.
    if (screen.view === v) {
      v.stash = v.box.value;
      v.box.value = text;
      v.replyTo = null;
      v.editing = editing;
      drawBar();
      grow(v.box);
      count();
    }
    const reason = error instanceof OfflineError
      ? 'X Chat is offline. Your edit is still in the box: save it again when it is back.'
      : errorText(error);
    toast(`Not saved. ${reason}`, { error: true });
  }
}

/** The node refused a send for good (not a connection problem): its text goes back to the box. */
export function giveBack(item, error) {
  const v = screen.view;
  const id = item.conversation;
  const join = (a, b) => (a ? `${a}\n${b}` : b);
  if (v && v.id === id) {
    if (v.editing) v.stash = join(v.stash, item.text);
    else {
      if (!v.box.value && item.reply_to) v.replyTo = v.msgs.get(item.reply_to) || null;
      v.box.value = join(v.box.value, item.text);
      saveDraft(id, v.box.value);
      drawBar();
      grow(v.box);
      count();
    }
  } else {
    saveDraft(id, join(loadDraft(id), item.text));
  }
  const to = v && v.id === id ? '' : ` to ${conversationName(id)}`;
  toast(`Not sent${to}. ${errorText(error)} The text is back in the box.`, { error: true });
}
