// The conversation list and the open conversation.
//
// Performance: opening a conversation is one request (the newest 50 messages) and one
// DOM insert of a fragment; older pages load when the top of the history scrolls into
// view. Nothing is fetched per message (a reply's quote is looked up only if its
// original is not loaded).
//
// Sending: every message gets a client_id before its first try and goes through the
// outbox (state.js). If the node cannot be reached, it stays there, shown as waiting, and
// is sent again with the same client_id when the node is back: never lost, never twice.

import { ApiError, OfflineError, del, get, patch, post } from './api.js';
import { announce, clear, dayKey, dayLabel, fullTime, h, icon, replace, shortKey, shortWhen, timeOf, vh } from './dom.js';
import { openContactInfo, openVerify, renameContact, setContactState } from './panels.js';
import {
  before, displayName, loadDraft, newClientId, outboxAdd, outboxAll, outboxOf, outboxRemove,
  outboxUpdate, saveDraft, state,
} from './state.js';
import { closeMenu, confirmDialog, openMenu, toast } from './ui.js';

const PAGE = 50;
const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
const STATES = {
  queued: { label: 'Queued', icon: 'clock' },
  sent: { label: 'Sent', icon: 'check' },
  delivered: { label: 'Delivered', icon: 'checks' },
  read: { label: 'Read', icon: 'checks' },
  failed: { label: 'Failed', icon: 'alert' },
};
const RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 1 };
const WAITING = 'Queued (waiting for your node)';

let els = null; // the layout's fixed elements
let view = null; // the open conversation
let viewSerial = 0;

export function errorText(error) {
  if (error instanceof OfflineError) return 'X Chat is offline.';
  if (error instanceof ApiError) return error.message;
  return 'Something went wrong.';
}

// -- layout -----------------------------------------------------------------------------

export function buildLayout(root, actions) {
  const search = h('input', {
    type: 'search', id: 'search', 'aria-label': 'Search', placeholder: 'Search',
    autocomplete: 'off', spellcheck: 'false',
  });
  const list = h('ul', { class: 'conv-list', id: 'conv-list' });
  const results = h('div', { class: 'search-results', hidden: true });
  const chat = h('section', { class: 'chat', 'aria-label': 'Conversation' });
  const layout = h('div', { class: 'layout', dataset: { pane: 'list' } },
    h('nav', { class: 'sidebar', 'aria-label': 'Conversations' },
      h('header', { class: 'side-head' },
        h('h1', { class: 'brand' }, h('img', { src: 'icon.svg', alt: '', class: 'brand-icon' }), 'X Chat'),
        h('div', { class: 'side-actions' },
          h('button', { type: 'button', class: 'icon-button', 'aria-label': 'My address', title: 'My address', onclick: actions.card }, icon('card')),
          h('button', { type: 'button', class: 'icon-button', 'aria-label': 'New chat', title: 'New chat', onclick: actions.newChat }, icon('plus')),
          h('button', { type: 'button', class: 'icon-button', 'aria-label': 'Settings', title: 'Settings', onclick: actions.settings }, icon('gear')))),
      h('div', { class: 'search-box' }, icon('search'), search),
      h('div', { class: 'side-scroll' }, list, results)),
    chat);
  replace(root, layout);
  els = { layout, list, results, search, chat };
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => runSearch(search.value), 200);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && search.value) {
      search.value = '';
      runSearch('');
    } else if (e.key === 'ArrowDown') {
      e.preventDefault();
      const first = layout.querySelector('.side-scroll button');
      if (first) first.focus();
    }
  });
  list.addEventListener('keydown', listKeys);
  results.addEventListener('keydown', listKeys);
  renderEmptyChat();
}

function listKeys(e) {
  if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
  const buttons = [...els.layout.querySelectorAll('.side-scroll button')];
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  e.preventDefault();
  const next = buttons[i + (e.key === 'ArrowDown' ? 1 : -1)];
  if (next) next.focus();
  else if (e.key === 'ArrowUp') els.search.focus();
}

export function teardown() {
  view = null;
  els = null;
  closeMenu();
}

function renderEmptyChat() {
  replace(els.chat, h('div', { class: 'chat-empty' },
    h('img', { src: 'icon.svg', alt: '', class: 'empty-icon' }),
    h('h2', null, 'X Chat'),
    h('p', null, state.conversations.size
      ? 'Choose a conversation, or start a new chat.'
      : 'No conversations yet. Start a chat by pasting a contact\'s address, or share yours.')));
}

// -- the conversation list ------------------------------------------------------------------

let listFrame = 0;
export function renderList() {
  if (listFrame || !els) return;
  listFrame = requestAnimationFrame(() => {
    listFrame = 0;
    if (els) drawList();
  });
}

function sortedConversations() {
  return [...state.conversations.values()].sort((a, b) => (b.last_activity || 0) - (a.last_activity || 0));
}

function previewOf(conv) {
  const m = conv.last_message;
  if (!m) return conv.state === 'request' ? 'Message request' : 'No messages yet';
  const text = m.deleted ? 'Message deleted' : m.body.replace(/\s+/g, ' ').slice(0, 120);
  return m.outgoing ? `You: ${text}` : text;
}

function drawList() {
  const focused = document.activeElement && els.list.contains(document.activeElement)
    ? document.activeElement.dataset.pk : null;
  const q = state.search.trim().toLowerCase();
  const fragment = document.createDocumentFragment();
  let total = 0;
  for (const conv of sortedConversations()) {
    total += conv.unread || 0;
    const name = displayName(conv.pubkey);
    if (q && !name.toLowerCase().includes(q) && !conv.npub.toLowerCase().includes(q)) continue;
    const current = conv.pubkey === state.current;
    fragment.appendChild(h('li', null,
      h('button', {
        type: 'button', class: 'conv', dataset: { pk: conv.pubkey },
        'aria-current': current ? 'true' : null,
        onclick: () => openConversation(conv.pubkey),
      },
      h('span', { class: 'avatar', 'aria-hidden': 'true', dataset: { hue: hueOf(conv.pubkey) } }, initial(name)),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-top' },
          h('span', { class: 'conv-name' }, name),
          trustMark(conv.pubkey),
          conv.state === 'request' ? h('span', { class: 'tag' }, 'Request') : null,
          h('time', { class: 'conv-time', datetime: conv.last_activity ? new Date(conv.last_activity).toISOString() : null },
            shortWhen(conv.last_activity))),
        h('span', { class: 'conv-bottom' },
          h('span', { class: 'conv-last' }, previewOf(conv)),
          conv.unread ? h('span', { class: 'unread' }, h('span', { 'aria-hidden': 'true' }, String(conv.unread)), vh(`, ${conv.unread} unread`)) : null)))));
  }
  if (!fragment.childNodes.length && !q) {
    fragment.appendChild(h('li', { class: 'list-empty' }, 'No conversations yet.'));
  }
  replace(els.list, fragment);
  document.title = total ? `(${total}) X Chat` : 'X Chat';
  if (focused) {
    const again = els.list.querySelector(`button[data-pk="${focused}"]`);
    if (again) again.focus();
  }
}

/** The contact's safety number changed since it was verified (or, this tab saw a new device). */
function numberChanged(pk) {
  const contact = state.contacts.get(pk);
  return Boolean((contact && contact.verification_changed) || state.keyChanged.has(pk));
}

/** In the list: a shield for a verified contact, a warning when the number changed. */
function trustMark(pk) {
  const contact = state.contacts.get(pk);
  if (numberChanged(pk)) {
    return h('span', { class: 'trust changed', title: 'The safety number changed: verify it again' },
      icon('alert'), vh('Safety number changed'));
  }
  if (contact && contact.verified) {
    return h('span', { class: 'trust ok', title: 'You verified this safety number' }, icon('shield'), vh('Verified'));
  }
  return null;
}

function initial(name) {
  const ch = [...name.trim()][0] || '?';
  return ch.toUpperCase();
}

function hueOf(pubkey) {
  return String(parseInt(pubkey.slice(0, 2), 16) % 8);
}

// -- search across conversations (names here; message text by the node, on this machine) --

let searchSerial = 0;
async function runSearch(text) {
  state.search = text;
  drawList();
  const serial = ++searchSerial;
  const q = text.trim();
  if (!q) {
    els.results.hidden = true;
    clear(els.results);
    return;
  }
  let hits = [];
  try {
    hits = await get(`/api/search?q=${encodeURIComponent(q)}`);
  } catch (error) {
    if (serial === searchSerial) replace(els.results, h('p', { class: 'list-empty' }, errorText(error)));
    return;
  }
  if (serial !== searchSerial || !els) return;
  els.results.hidden = false;
  replace(els.results,
    h('h2', { class: 'results-title', id: 'results-title' }, 'Messages'),
    hits.length
      ? h('ul', { class: 'conv-list', 'aria-labelledby': 'results-title' }, hits.map((m) => h('li', null,
        h('button', { type: 'button', class: 'conv hit', onclick: () => openConversation(m.conversation, { focus: m }) },
          h('span', { class: 'conv-main' },
            h('span', { class: 'conv-top' },
              h('span', { class: 'conv-name' }, m.outgoing ? `You to ${displayName(m.conversation)}` : displayName(m.conversation)),
              h('time', { class: 'conv-time' }, shortWhen(m.sent_at))),
            h('span', { class: 'conv-last' }, highlight(m.body, q)))))))
      : h('p', { class: 'list-empty' }, 'No messages found.'));
}

function highlight(body, q) {
  const lower = body.toLowerCase();
  const at = lower.indexOf(q.toLowerCase());
  if (at < 0) return body.slice(0, 140);
  const start = Math.max(0, at - 40);
  return [start ? '…' : '', body.slice(start, at), h('mark', null, body.slice(at, at + q.length)),
    body.slice(at + q.length, at + q.length + 100)];
}

// -- the open conversation -------------------------------------------------------------

export function currentView() {
  return view;
}

function keepDraft() {
  if (view && !view.editing) saveDraft(view.pk, view.box.value);
  else if (view) saveDraft(view.pk, view.stash || '');
}

export function closeConversation() {
  keepDraft();
  view = null;
  state.current = null;
  sessionStorage.removeItem('xchat.current');
  if (!els) return;
  els.layout.dataset.pane = 'list';
  renderEmptyChat();
  renderList();
}

export async function openConversation(pk, { focus = null } = {}) {
  if (!els) return;
  keepDraft();
  closeMenu();
  const serial = ++viewSerial;
  state.current = pk;
  sessionStorage.setItem('xchat.current', pk);
  els.layout.dataset.pane = 'chat';
  view = makeView(pk, serial);
  drawChat();
  renderList();
  let page;
  try {
    page = await loadUntil(pk, focus);
  } catch (error) {
    if (serial !== viewSerial) return;
    replace(view.listEl, h('li', { class: 'list-empty' }, `Could not load messages: ${errorText(error)}`));
    drawPending();
    return;
  }
  if (serial !== viewSerial) return;
  view.hasMore = page.more;
  clear(view.listEl);
  view.listEl.appendChild(renderMessages(page.messages, null));
  view.loaded = true;
  updateTop();
  drawPending();
  if (focus && view.els.has(focus.id)) {
    const li = view.els.get(focus.id);
    li.classList.add('flash');
    li.scrollIntoView({ block: 'center' });
    li.focus();
  } else {
    view.scroller.scrollTop = view.scroller.scrollHeight;
    if (window.matchMedia('(min-width: 760px)').matches || !focus) view.box.focus({ preventScroll: true });
  }
  markReadSoon();
}

/** The newest page, or pages back to a search hit (bounded). */
async function loadUntil(pk, focus) {
  const base = `/api/conversations/${pk}/messages`;
  let messages = await get(`${base}?limit=${PAGE}`);
  let more = messages.length === PAGE;
  if (focus) {
    let pages = 0;
    while (more && pages < 20 && !messages.some((m) => m.id === focus.id)) {
      const last = messages[messages.length - 1];
      const older = await get(`${base}?limit=200&before_sent_at=${last.sent_at}&before_seq=${last.seq}`);
      messages = messages.concat(older);
      more = older.length === 200;
      pages += 1;
    }
  }
  return { messages: messages.reverse(), more };
}

function makeView(pk, serial) {
  const scroller = h('div', { class: 'messages', tabindex: '0', role: 'log', 'aria-live': 'off', 'aria-label': 'Messages' });
  const listEl = h('ol', { class: 'message-list' }, h('li', { class: 'list-empty' }, 'Loading…'));
  const top = h('div', { class: 'history-top' });
  const pendingEl = h('ol', { class: 'message-list pending-list' });
  scroller.append(top, listEl, pendingEl);
  const box = h('textarea', {
    id: 'message-box', rows: 1, placeholder: 'Write a message', 'aria-label': 'Message',
    autocomplete: 'off', spellcheck: 'true', dir: 'auto',
  });
  box.value = loadDraft(pk);
  return {
    pk, serial, scroller, listEl, top, box, pendingEl,
    msgs: new Map(), els: new Map(),
    oldest: null, newest: null, hasMore: false, loading: false, loaded: false,
    replyTo: null, editing: null,
    header: h('header', { class: 'chat-head' }),
    notices: h('div', { class: 'notices' }),
    composer: h('div', { class: 'composer' }),
    jump: null,
  };
}

function drawChat() {
  const v = view;
  const jump = h('button', { type: 'button', class: 'jump', hidden: true, onclick: () => scrollToEnd(true) }, icon('down'), 'New messages');
  v.jump = jump;
  replace(els.chat, v.header, v.notices, h('div', { class: 'messages-wrap' }, v.scroller, jump), v.composer);
  drawHeader();
  drawNotices();
  drawComposer();
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadOlder();
  }, { root: v.scroller, rootMargin: '600px 0px 0px 0px' });
  observer.observe(v.top);
  v.scroller.addEventListener('scroll', () => {
    if (nearBottom()) jump.hidden = true;
  }, { passive: true });
  v.scroller.addEventListener('keydown', messageKeys);
}

export function drawHeader() {
  if (!view) return;
  const pk = view.pk;
  const conv = state.conversations.get(pk) || {};
  const contact = state.contacts.get(pk) || {};
  const name = displayName(pk);
  const verified = contact.verified === true && !numberChanged(pk);
  const forwardSecret = contact.forward_secret ?? conv.forward_secret ?? true;
  const blocked = contact.state === 'blocked';
  const more = h('button', {
    type: 'button', class: 'icon-button', 'aria-label': 'Conversation menu', 'aria-haspopup': 'menu',
    'aria-expanded': 'false',
    onclick: (e) => openMenu(e.currentTarget, 'Conversation menu', [
      { label: 'Contact details', action: () => openContactInfo(pk) },
      { label: 'Rename', action: () => renameContact(pk) },
      { label: 'Verify safety number', action: () => openVerify(pk) },
      blocked
        ? { label: 'Unblock', action: () => setContactState(pk, 'accepted') }
        : { label: 'Block', danger: true, action: () => blockContact(pk) },
    ]),
  }, icon('more'));
  replace(view.header,
    h('button', { type: 'button', class: 'icon-button back', 'aria-label': 'Back to conversations', onclick: closeConversation }, icon('back')),
    h('span', { class: 'avatar', 'aria-hidden': 'true', dataset: { hue: hueOf(pk) } }, initial(name)),
    h('div', { class: 'chat-title' },
      h('h2', { id: 'chat-name' }, name,
        verified ? h('span', { class: 'verified', title: 'You verified this safety number' }, icon('shield'), 'Verified') : null),
      h('div', { class: 'chat-sub' },
        h('span', { class: 'npub' }, shortKey(conv.npub || contact.npub)),
        forwardSecret
          ? h('span', { class: 'badge ok', id: 'forward-secrecy', title: 'X Chat sessions (Olm): a key stolen later cannot decrypt these messages.' }, 'Forward-secret')
          : h('span', {
            class: 'badge warn', id: 'forward-secrecy', title: 'Plain NIP-17 messages: a key stolen later could decrypt them.',
          }, 'Not forward-secret'))),
    h('button', { type: 'button', class: 'ghost verify-button', onclick: () => openVerify(pk) }, icon('shield'), h('span', { class: 'label' }, 'Verify')),
    more);
}

async function blockContact(pk) {
  const ok = await confirmDialog(`Block ${displayName(pk)}?`,
    'Blocked contacts cannot message you, and their conversation leaves the list. You can unblock them in Settings.',
    'Block');
  if (ok) setContactState(pk, 'blocked');
}

export function drawNotices() {
  if (!view) return;
  const pk = view.pk;
  const conv = state.conversations.get(pk) || {};
  const contact = state.contacts.get(pk);
  const name = displayName(pk);
  const notices = [];
  const changed = numberChanged(pk) && !state.dismissed.has(pk);
  if (changed) {
    notices.push(h('div', { class: 'notice danger', role: 'alert' },
      icon('alert'),
      h('p', null, h('strong', null, `${name}'s safety number has changed. `),
        'They added a device or reinstalled X Chat, or someone is trying to intercept your messages. ',
        'Verify the new number with them before you share anything sensitive.'),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => openVerify(pk) }, 'Verify safety number'),
        h('button', { type: 'button', onclick: () => { state.dismissed.add(pk); drawNotices(); } }, 'Dismiss'))));
  }
  const forwardSecret = (contact || {}).forward_secret ?? conv.forward_secret ?? true;
  if (!forwardSecret) notices.push(forwardSecrecyNotice(name, contact || {}));
  const requestState = (contact && contact.state) || conv.state;
  if (requestState === 'request') {
    notices.push(h('div', { class: 'notice', role: 'region', 'aria-label': 'Message request' },
      h('p', null, h('strong', null, 'Message request. '),
        `${name} is not in your contacts. Accept to reply and to let them know you got their messages; block to stop hearing from them.`),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => setContactState(pk, 'accepted') }, 'Accept'),
        h('button', { type: 'button', class: 'danger', onclick: () => blockContact(pk) }, 'Block'))));
  }
  if (requestState === 'blocked') {
    notices.push(h('div', { class: 'notice' }, h('p', null, `You blocked ${name}.`),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', onclick: () => setContactState(pk, 'accepted') }, 'Unblock'))));
  }
  replace(view.notices, notices);
  view.composer.hidden = requestState === 'request' || requestState === 'blocked';
}

/** Why this conversation is not forward-secret, and what X Chat does about it. */
function forwardSecrecyNotice(name, contact) {
  const looking = contact.state === 'accepted' && contact.next_keys_check_at;
  return h('div', { class: 'notice warn', role: 'note', id: 'forward-secrecy-notice' },
    icon('alert'),
    h('p', null, h('strong', null, 'Not forward-secret: '),
      `${name}'s app has not published its X Chat keys yet, or ${name} uses another Nostr app (plain NIP-17). `,
      'Messages are end-to-end encrypted, but a key stolen later could decrypt them. ',
      looking
        ? 'X Chat keeps looking for their keys and switches to forward secrecy as soon as they appear.'
        : 'X Chat looks for their keys again once you accept them or write to them.'));
}

/** A contact's verified mark or warning changed: redraw where it shows. */
export function trustChanged(pk) {
  renderList();
  if (view && view.pk === pk) {
    drawHeader();
    drawNotices();
  }
}

// -- messages ----------------------------------------------------------------------------

function renderMessages(messages, prevDay) {
  const fragment = document.createDocumentFragment();
  let day = prevDay;
  for (const m of messages) {
    const key = dayKey(m.sent_at);
    if (key !== day) {
      fragment.appendChild(separator(m.sent_at, key));
      day = key;
    }
    fragment.appendChild(messageEl(m));
  }
  return fragment;
}

function separator(ms, key) {
  return h('li', { class: 'day', dataset: { day: key }, role: 'separator' }, h('span', null, dayLabel(ms)));
}

function track(m) {
  view.msgs.set(m.id, m);
  if (!view.oldest || before(m, view.oldest)) view.oldest = m;
  if (!view.newest || before(view.newest, m)) view.newest = m;
}

function messageEl(m) {
  track(m);
  const li = h('li', { class: 'msg', tabindex: '-1', dataset: { id: m.id } });
  fillMessage(li, m);
  view.els.set(m.id, li);
  return li;
}

function fillMessage(li, m) {
  li.className = `msg ${m.outgoing ? 'out' : 'in'}${m.deleted ? ' deleted' : ''}`;
  li.dataset.state = m.state;
  const author = m.outgoing ? 'You' : displayName(m.conversation);
  const bubble = h('div', { class: 'bubble' },
    vh(`${author}: `),
    m.reply_to && !m.deleted ? quoteEl(m.reply_to) : null,
    m.deleted
      ? h('p', { class: 'body' }, h('em', null, m.outgoing ? 'You deleted this message' : 'This message was deleted'))
      : h('p', { class: 'body', dir: 'auto' }, m.body),
    m.note && !m.deleted ? h('p', { class: 'note' }, icon('alert'), h('span', null, `${m.note[0].toUpperCase()}${m.note.slice(1)}.`)) : null,
    h('div', { class: 'meta' },
      m.edited_at && !m.deleted ? h('span', { class: 'edited' }, 'edited') : null,
      h('time', { datetime: new Date(m.sent_at).toISOString(), title: fullTime(m.sent_at) }, timeOf(m.sent_at)),
      m.outgoing ? stateEl(m) : null));
  const reactions = reactionsEl(m);
  const actions = h('button', {
    type: 'button', class: 'icon-button msg-actions', tabindex: '-1', 'aria-label': 'Message actions',
    'aria-haspopup': 'menu', onclick: (e) => messageMenu(e.currentTarget, m.id),
  }, icon('more'));
  const retry = m.outgoing && m.state === 'failed'
    ? h('div', { class: 'failed-row' },
      h('span', { class: 'failed-why' }, m.state_detail ? `Not sent: ${m.state_detail}` : 'Not sent'),
      h('button', { type: 'button', class: 'small', onclick: () => retrySend(m.id) }, 'Retry'))
    : null;
  replace(li, h('div', { class: 'msg-row' }, bubble, m.deleted ? null : actions), reactions, retry);
}

function stateEl(m) {
  const info = STATES[m.state] || { label: m.state, icon: 'clock' };
  return h('span', { class: `state state-${m.state}`, title: m.state_detail || info.label },
    icon(info.icon), h('span', { class: 'state-text' }, info.label));
}

function reactionsEl(m) {
  const entries = Object.entries(m.reactions || {});
  if (!entries.length || m.deleted) return null;
  const counts = new Map();
  for (const [who, emoji] of entries) {
    const list = counts.get(emoji) || [];
    list.push(who === state.identity?.pubkey ? 'you' : displayName(who));
    counts.set(emoji, list);
  }
  return h('ul', { class: 'reactions', 'aria-label': 'Reactions' },
    [...counts].map(([emoji, who]) => h('li', { title: who.join(', ') },
      h('span', { 'aria-hidden': 'true' }, `${emoji}${who.length > 1 ? ` ${who.length}` : ''}`),
      vh(`${emoji} by ${who.join(', ')}`))));
}

const quoteCache = new Map();
function quoteEl(id) {
  const el = h('button', { type: 'button', class: 'quote', tabindex: '-1', onclick: () => jumpTo(id) });
  const fill = (m) => {
    if (!m) {
      replace(el, h('span', { class: 'quote-text' }, 'Original message not found'));
      return;
    }
    replace(el,
      h('span', { class: 'quote-author' }, m.outgoing ? 'You' : displayName(m.conversation)),
      h('span', { class: 'quote-text' }, m.deleted ? 'Deleted message' : m.body.slice(0, 200)));
  };
  const known = (view && view.msgs.get(id)) || quoteCache.get(id);
  if (known) fill(known);
  else {
    el.textContent = '…';
    get(`/api/messages/${id}`).then((m) => { quoteCache.set(id, m); fill(m); }, () => fill(null));
  }
  return el;
}

function jumpTo(id) {
  const li = view && view.els.get(id);
  if (!li) return;
  li.scrollIntoView({ block: 'center', behavior: 'smooth' });
  li.classList.remove('flash');
  void li.offsetWidth;
  li.classList.add('flash');
  li.focus({ preventScroll: true });
}

function messageMenu(anchor, id) {
  const m = view && view.msgs.get(id);
  if (!m) return;
  const contact = state.contacts.get(view.pk) || {};
  const conv = state.conversations.get(view.pk) || {};
  const forwardSecret = contact.forward_secret ?? conv.forward_secret ?? true;
  const mine = m.reactions && state.identity ? m.reactions[state.identity.pubkey] : null;
  const items = [
    { label: 'Reactions', row: EMOJI.map((emoji) => ({ label: emoji, ariaLabel: mine === emoji ? `Remove reaction ${emoji}` : `React with ${emoji}`, action: () => react(id, mine === emoji ? '' : emoji) })) },
    { label: 'Reply', action: () => startReply(id) },
    { label: 'Copy text', action: () => copyText(m.body) },
  ];
  if (m.outgoing && forwardSecret) items.push({ label: 'Edit', action: () => startEdit(id) });
  if (m.outgoing) items.push({ label: 'Delete for everyone', danger: true, action: () => deleteMessage(id) });
  openMenu(anchor, 'Message actions', items);
}

function messageKeys(e) {
  const target = e.target;
  const items = () => [...view.listEl.querySelectorAll('li.msg')];
  if (e.key === 'ArrowUp' || e.key === 'ArrowDown') {
    const all = items();
    if (!all.length) return;
    e.preventDefault();
    let i = all.indexOf(target.closest ? target.closest('li.msg') : null);
    if (i < 0) i = e.key === 'ArrowUp' ? all.length : -1;
    const next = all[Math.max(0, Math.min(all.length - 1, i + (e.key === 'ArrowUp' ? -1 : 1)))];
    next.focus();
  } else if ((e.key === 'Enter' || e.key === 'ContextMenu' || (e.key === 'F10' && e.shiftKey)) && target.matches && target.matches('li.msg')) {
    e.preventDefault();
    const button = target.querySelector('.msg-actions');
    if (button) messageMenu(button, target.dataset.id);
  } else if (e.key === 'Escape') {
    view.box.focus();
  }
}

async function react(id, emoji) {
  try {
    const m = await post(`/api/messages/${id}/reactions`, { emoji });
    applyMessage(m);
  } catch (error) {
    toast(`Could not react: ${errorText(error)}`, { error: true });
  }
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Copied');
  } catch {
    toast('Could not copy', { error: true });
  }
}

async function deleteMessage(id) {
  const ok = await confirmDialog('Delete for everyone?', 'The message is removed for you and for the other person.', 'Delete for everyone');
  if (!ok) return;
  try {
    applyMessage(await del(`/api/messages/${id}`));
  } catch (error) {
    toast(`Could not delete: ${errorText(error)}`, { error: true });
  }
}

async function retrySend(id) {
  try {
    applyMessage(await post(`/api/messages/${id}/retry`));
  } catch (error) {
    toast(`Could not retry: ${errorText(error)}`, { error: true });
  }
}

/** History scrolled to its top: fetch the page before the oldest loaded message. */
async function loadOlder() {
  const v = view;
  if (!v || !v.loaded || v.loading || !v.hasMore || !v.oldest) return;
  v.loading = true;
  updateTop();
  let page;
  try {
    page = await get(`/api/conversations/${v.pk}/messages?limit=${PAGE}&before_sent_at=${v.oldest.sent_at}&before_seq=${v.oldest.seq}`);
  } catch {
    v.loading = false;
    updateTop();
    return;
  }
  if (view !== v) return;
  v.loading = false;
  v.hasMore = page.length === PAGE;
  page = page.filter((m) => !v.msgs.has(m.id)).reverse();
  if (page.length) {
    const fromBottom = v.scroller.scrollHeight - v.scroller.scrollTop;
    const fragment = renderMessages(page, null);
    const first = v.listEl.firstElementChild;
    if (first && first.classList.contains('day') && first.dataset.day === dayKey(page[page.length - 1].sent_at)) first.remove();
    v.listEl.insertBefore(fragment, v.listEl.firstChild);
    v.scroller.scrollTop = v.scroller.scrollHeight - fromBottom;
  }
  updateTop();
  if (v.hasMore && v.scroller.scrollTop < 600) requestAnimationFrame(loadOlder);
}

function updateTop() {
  if (!view) return;
  if (view.loading) replace(view.top, h('p', { class: 'history-note' }, 'Loading older messages…'));
  else if (!view.hasMore && view.loaded) {
    replace(view.top, h('p', { class: 'history-note' }, 'This is the beginning of your conversation with ', displayName(view.pk), '.'));
  } else clear(view.top);
}

function nearBottom() {
  const s = view.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToEnd(focus) {
  if (!view) return;
  view.scroller.scrollTop = view.scroller.scrollHeight;
  view.jump.hidden = true;
  if (focus) view.box.focus();
}

/** A message from the stream or an API answer: update it or add it in order. */
export function applyMessage(m) {
  const latest = updateListFor(m);
  if (!view || view.pk !== m.conversation || !view.loaded) return latest;
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
  const list = view.listEl;
  if (!view.newest || !before(m, view.newest)) {
    const lastDay = view.newest ? dayKey(view.newest.sent_at) : null;
    if (list.querySelector('.list-empty')) clear(list);
    list.appendChild(renderMessages([m], lastDay));
    return;
  }
  if (view.oldest && before(m, view.oldest) && view.hasMore) return; // older than what is loaded
  let after = null;
  for (const [id, other] of view.msgs) {
    if (before(other, m) && (!after || before(after, other))) after = other;
    void id;
  }
  const li = messageEl(m);
  if (after) view.els.get(after.id).after(li);
  else list.insertBefore(li, list.firstChild);
}

function refreshQuotes(m) {
  quoteCache.set(m.id, m);
  for (const [id, other] of view.msgs) {
    if (other.reply_to === m.id) fillMessage(view.els.get(id), other);
  }
}

export function applyState(event) {
  for (const conv of state.conversations.values()) {
    if (conv.last_message && conv.last_message.id === event.id) {
      conv.last_message = { ...conv.last_message, state: event.state };
    }
  }
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
  if (!view || view.pk !== event.conversation) return;
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
    const visible = view && view.pk === m.conversation && document.visibilityState === 'visible';
    if (!m.outgoing && !visible) conv.unread = (conv.unread || 0) + 1;
  }
  renderList();
  return latest;
}

/** A new incoming message: say it, and mark it read if its conversation is on screen. */
export function incoming(m) {
  const name = displayName(m.conversation);
  announce(`${name}: ${m.body}`);
  if (view && view.pk === m.conversation) markReadSoon();
}

let readTimer = 0;
export function markReadSoon() {
  clearTimeout(readTimer);
  readTimer = setTimeout(markRead, 150);
}

async function markRead() {
  if (!view || !view.loaded || document.visibilityState !== 'visible') return;
  const pk = view.pk;
  const conv = state.conversations.get(pk);
  const contact = state.contacts.get(pk);
  // A message request is read only once accepted: then the sender gets a read receipt.
  if (((contact && contact.state) || (conv && conv.state)) !== 'accepted') return;
  const unseen = [...view.msgs.values()].some((m) => !m.outgoing && m.state === 'received');
  if (!unseen && !(conv && conv.unread)) return;
  try {
    await post(`/api/conversations/${pk}/read`);
    if (conv) conv.unread = 0;
    for (const m of view && view.pk === pk ? view.msgs.values() : []) {
      if (!m.outgoing && m.state === 'received') m.state = 'read';
    }
    renderList();
  } catch {
    // tried again on the next message or reconnect
  }
}

/** After a reconnect: the newest page again, merged into what is shown. */
export async function refreshOpen() {
  if (!view || !view.loaded) return;
  const v = view;
  try {
    const page = await get(`/api/conversations/${v.pk}/messages?limit=${PAGE}`);
    if (view !== v) return;
    if (page.length === PAGE && !page.some((m) => v.msgs.has(m.id))) {
      openConversation(v.pk); // more arrived than a page while offline: start afresh
      return;
    }
    for (const m of page.reverse()) applyMessage(m);
    markReadSoon();
  } catch {
    // still offline: the next reconnect tries again
  }
}

// -- the composer ----------------------------------------------------------------------------

function drawComposer() {
  const v = view;
  const bar = h('div', { class: 'compose-bar', hidden: true });
  const send = h('button', { type: 'submit', class: 'send' }, icon('send'), h('span', { class: 'label' }, 'Send'));
  send.setAttribute('aria-label', 'Send');
  const form = h('form', { class: 'compose-form', onsubmit: (e) => { e.preventDefault(); sendMessage(); } },
    v.box, send);
  replace(v.composer, bar, form);
  v.bar = bar;
  v.box.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      sendMessage();
    } else if (e.key === 'Escape' && (v.replyTo || v.editing)) {
      e.preventDefault();
      cancelCompose();
    } else if (e.key === 'ArrowUp' && !v.box.value && !v.editing) {
      const mine = [...v.msgs.values()].filter((m) => m.outgoing && !m.deleted).sort((a, b) => (before(a, b) ? -1 : 1));
      const forwardSecret = (state.contacts.get(v.pk) || {}).forward_secret ?? true;
      if (mine.length && forwardSecret) {
        e.preventDefault();
        startEdit(mine[mine.length - 1].id);
      }
    }
  });
  v.box.addEventListener('input', () => {
    if (!v.editing) saveDraft(v.pk, v.box.value);
    grow(v.box);
  });
  requestAnimationFrame(() => grow(v.box));
}

function grow(box) {
  box.style.height = 'auto';
  box.style.height = `${Math.min(box.scrollHeight, 200)}px`;
}

function drawBar() {
  const v = view;
  const target = v.editing || v.replyTo;
  if (!target) {
    v.bar.hidden = true;
    clear(v.bar);
    return;
  }
  v.bar.hidden = false;
  const title = v.editing ? 'Editing message' : `Replying to ${target.outgoing ? 'yourself' : displayName(target.conversation)}`;
  replace(v.bar,
    h('div', { class: 'bar-text' }, h('strong', null, title), h('span', { class: 'quote-text' }, target.body.slice(0, 200))),
    h('button', { type: 'button', class: 'small', onclick: cancelCompose }, v.editing ? 'Cancel edit' : 'Cancel reply'));
}

function startReply(id) {
  view.editing = null;
  view.replyTo = view.msgs.get(id);
  drawBar();
  view.box.focus();
}

function startEdit(id) {
  const m = view.msgs.get(id);
  if (!m) return;
  if (!view.editing) view.stash = view.box.value; // the draft comes back after the edit
  view.replyTo = null;
  view.editing = m;
  view.box.value = m.body;
  grow(view.box);
  drawBar();
  view.box.focus();
}

function cancelCompose() {
  if (view.editing) {
    view.box.value = view.stash || '';
    view.stash = '';
  }
  view.replyTo = null;
  view.editing = null;
  saveDraft(view.pk, view.box.value);
  drawBar();
  grow(view.box);
  view.box.focus();
}

async function sendMessage() {
  const v = view;
  if (!v) return;
  const text = v.box.value;
  if (!text.trim()) return;
  const pk = v.pk;
  const reply = v.replyTo;
  const editing = v.editing;
  v.box.value = editing ? v.stash || '' : '';
  v.stash = '';
  v.replyTo = null;
  v.editing = null;
  saveDraft(pk, v.box.value);
  drawBar();
  grow(v.box);
  if (!editing) {
    // The id is chosen before the first try: every later try sends the same message.
    outboxAdd({
      id: newClientId(), conversation: pk, text, reply_to: reply ? reply.id : null,
      at: Date.now(), waiting: false,
    });
    flushOutbox();
    return;
  }
  try {
    applyMessage(await patch(`/api/messages/${editing.id}`, { text }));
  } catch (error) {
    // Nothing typed is lost: the edit goes back into the box.
    if (view === v) {
      v.stash = v.box.value;
      v.box.value = text;
      v.replyTo = null;
      v.editing = editing;
      drawBar();
      grow(v.box);
    }
    const why = error instanceof OfflineError
      ? 'X Chat is offline. Your edit is still in the box: save it again when it is back.'
      : errorText(error);
    toast(`Not sent. ${why}`, { error: true });
  }
}

// -- the outbox --------------------------------------------------------------------------------

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
    giveBack(item, error);
    return true;
  }
  outboxRemove(item);
  applyMessage(m);
  drawPending();
  if (view && view.pk === item.conversation) scrollToEnd(false);
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

/** The node refused the message (not a connection problem): its text goes back to the box. */
function giveBack(item, error) {
  const pk = item.conversation;
  const join = (a, b) => (a ? `${a}\n${b}` : b);
  if (view && view.pk === pk) {
    if (view.editing) view.stash = join(view.stash, item.text);
    else {
      if (!view.box.value && item.reply_to) view.replyTo = view.msgs.get(item.reply_to) || null;
      view.box.value = join(view.box.value, item.text);
      saveDraft(pk, view.box.value);
      drawBar();
      grow(view.box);
    }
  } else {
    saveDraft(pk, join(loadDraft(pk), item.text));
  }
  const to = pk === state.current ? '' : ` to ${displayName(pk)}`;
  toast(`Not sent${to}. ${errorText(error)} The text is back in the box.`, { error: true });
}

/** The open conversation's waiting sends, below its messages. */
function drawPending() {
  if (!view) return;
  const v = view;
  const items = outboxOf(v.pk).filter((item) => item.waiting && !v.msgs.has(item.id));
  const had = v.pendingEl.children.length;
  replace(v.pendingEl, items.map(pendingEl));
  if (items.length > had) scrollToEnd(false);
}

function pendingEl(item) {
  return h('li', { class: 'msg out pending', tabindex: '-1', dataset: { pending: item.id } },
    h('div', { class: 'msg-row' },
      h('div', { class: 'bubble' },
        vh('You: '),
        item.reply_to ? quoteEl(item.reply_to) : null,
        h('p', { class: 'body', dir: 'auto' }, item.text),
        h('div', { class: 'meta' },
          h('span', {
            class: 'state state-waiting',
            title: 'Your X Chat node has not taken this message yet. It is sent as soon as the node is reachable, once.',
          }, icon('clock'), h('span', { class: 'state-text' }, WAITING))))));
}
