// One message on screen: its bubble (text with clickable links, long text collapsed),
// state, reactions, quote and menu; and a send still waiting in the tab's outbox.
//
// Links: only http(s) addresses become links, built as DOM nodes (never markup), opened
// in a new tab with rel="noopener noreferrer" and no referrer. Nothing is fetched for
// them: no previews, so a link in a message tells nobody that you read it.

import { get } from './api.js';
import { dayKey, dayLabel, fullTime, h, icon, replace, timeOf, vh } from './dom.js';
import { personName } from './people.js';
import { screen } from './screen.js';
import { before, state } from './state.js';
import { openMenu } from './ui.js';

const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🙏'];
const STATES = {
  queued: { label: 'Queued', icon: 'clock' },
  sent: { label: 'Sent', icon: 'check' },
  delivered: { label: 'Delivered', icon: 'checks' },
  read: { label: 'Read', icon: 'checks' },
  failed: { label: 'Failed', icon: 'alert' },
};
export const RANK = { queued: 0, sent: 1, delivered: 2, read: 3, failed: 1 };
const WAITING = 'Queued (waiting for your node)';
const LONG_CHARS = 900; // longer texts (or more lines) start collapsed
const LONG_LINES = 14;
const LINK = /\bhttps?:\/\/[^\s<>"']+/gi;
const TRAILING = /[.,;:!?'"]+$/;

export function renderMessages(messages, prevDay) {
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
  const view = screen.view;
  view.msgs.set(m.id, m);
  if (!view.oldest || before(m, view.oldest)) view.oldest = m;
  if (!view.newest || before(view.newest, m)) view.newest = m;
}

export function messageEl(m) {
  track(m);
  const li = h('li', { class: 'msg', tabindex: '-1', dataset: { id: m.id } });
  fillMessage(li, m);
  screen.view.els.set(m.id, li);
  return li;
}

function authorOf(m) {
  return m.outgoing ? 'You' : personName(m.sender);
}

export function fillMessage(li, m) {
  const actions = screen.actions;
  li.className = `msg ${m.outgoing ? 'out' : 'in'}${m.deleted ? ' deleted' : ''}`;
  li.dataset.state = m.state;
  const bubble = h('div', { class: 'bubble' },
    vh(`${authorOf(m)}: `),
    m.reply_to && !m.deleted ? quoteEl(m.reply_to) : null,
    m.deleted
      ? h('p', { class: 'body' }, h('em', null, m.outgoing ? 'You deleted this message' : 'This message was deleted'))
      : bodyEl(m.body, li.querySelector('.body.long:not(.collapsed)') !== null),
    m.note && !m.deleted ? h('p', { class: 'note' }, icon('alert'), h('span', null, `${m.note[0].toUpperCase()}${m.note.slice(1)}.`)) : null,
    h('div', { class: 'meta' },
      m.edited_at && !m.deleted ? h('span', { class: 'edited' }, 'edited') : null,
      h('time', { datetime: new Date(m.sent_at).toISOString(), title: fullTime(m.sent_at) }, timeOf(m.sent_at)),
      m.outgoing ? stateEl(m) : null));
  const menu = h('button', {
    type: 'button', class: 'icon-button msg-actions', tabindex: '-1', 'aria-label': 'Message actions',
    'aria-haspopup': 'menu', onclick: (e) => messageMenu(e.currentTarget, m.id),
  }, icon('more'));
  const retry = m.outgoing && m.state === 'failed'
    ? h('div', { class: 'failed-row' },
      h('span', { class: 'failed-why' }, m.state_detail ? `Not sent: ${m.state_detail}` : 'Not sent'),
      h('button', { type: 'button', class: 'small', onclick: () => actions.retry(m.id) }, 'Retry'))
    : null;
  replace(li, h('div', { class: 'msg-row' }, bubble, m.deleted ? null : menu), reactionsEl(m), retry);
}

/** The text, with http(s) links as links; collapsed behind "Show more" when long. */
function bodyEl(text, expanded) {
  const body = h('p', { class: 'body', dir: 'auto' }, linkify(text));
  const long = text.length > LONG_CHARS || text.split('\n').length > LONG_LINES;
  if (!long) return body;
  body.classList.add('long');
  body.id = `b-${Math.random().toString(36).slice(2)}`;
  const toggle = h('button', { type: 'button', class: 'link-button more-toggle', 'aria-controls': body.id });
  const set = (open) => {
    body.classList.toggle('collapsed', !open);
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Show less' : 'Show more';
  };
  toggle.addEventListener('click', () => set(body.classList.contains('collapsed')));
  set(expanded);
  return [body, toggle];
}

/** Text and <a> nodes: every http(s) address a link, the rest plain text. */
export function linkify(text) {
  const parts = [];
  let at = 0;
  for (const found of text.matchAll(LINK)) {
    let url = found[0].replace(TRAILING, '');
    if (url.endsWith(')') && !url.includes('(')) url = url.slice(0, -1);
    let href = null;
    try {
      const parsed = new URL(url);
      if (parsed.protocol === 'http:' || parsed.protocol === 'https:') href = parsed.href;
    } catch {
      href = null;
    }
    if (!href) continue;
    if (found.index > at) parts.push(text.slice(at, found.index));
    parts.push(h('a', {
      href, target: '_blank', rel: 'noopener noreferrer', referrerpolicy: 'no-referrer', class: 'link',
    }, url));
    at = found.index + url.length;
  }
  if (at < text.length) parts.push(text.slice(at));
  return parts;
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
    list.push(who === state.identity?.pubkey ? 'you' : personName(who));
    counts.set(emoji, list);
  }
  return h('ul', { class: 'reactions', 'aria-label': 'Reactions' },
    [...counts].map(([emoji, who]) => h('li', { title: who.join(', ') },
      h('span', { 'aria-hidden': 'true' }, `${emoji}${who.length > 1 ? ` ${who.length}` : ''}`),
      vh(`${emoji} by ${who.join(', ')}`))));
}

const quoteCache = new Map();

export function quoteEl(id) {
  const el = h('button', { type: 'button', class: 'quote', tabindex: '-1', onclick: () => screen.actions.jump(id) });
  const fill = (m) => {
    if (!m) {
      replace(el, h('span', { class: 'quote-text' }, 'Original message not found'));
      return;
    }
    replace(el,
      h('span', { class: 'quote-author' }, authorOf(m)),
      h('span', { class: 'quote-text' }, m.deleted ? 'Deleted message' : m.body.slice(0, 200)));
  };
  const view = screen.view;
  const known = (view && view.msgs.get(id)) || quoteCache.get(id);
  if (known) fill(known);
  else {
    el.textContent = '…';
    get(`/api/messages/${id}`).then((m) => { quoteCache.set(id, m); fill(m); }, () => fill(null));
  }
  return el;
}

/** A message changed: the quotes of the replies to it follow. */
export function refreshQuotes(m) {
  const view = screen.view;
  quoteCache.set(m.id, m);
  for (const [id, other] of view.msgs) {
    if (other.reply_to === m.id) fillMessage(view.els.get(id), other);
  }
}

export function messageMenu(anchor, id) {
  const view = screen.view;
  const m = view && view.msgs.get(id);
  if (!m) return;
  const actions = screen.actions;
  const mine = m.reactions && state.identity ? m.reactions[state.identity.pubkey] : null;
  const items = [
    { label: 'Reactions', row: EMOJI.map((emoji) => ({ label: emoji, ariaLabel: mine === emoji ? `Remove reaction ${emoji}` : `React with ${emoji}`, action: () => actions.react(id, mine === emoji ? '' : emoji) })) },
    { label: 'Reply', action: () => actions.reply(id) },
    { label: 'Copy text', action: () => actions.copy(m.body) },
  ];
  if (m.outgoing && view.forwardSecret()) items.push({ label: 'Edit', action: () => actions.edit(id) });
  if (m.outgoing) items.push({ label: 'Delete for everyone', danger: true, action: () => actions.remove(id) });
  openMenu(anchor, 'Message actions', items);
}

/** A send the node has not taken yet, below the conversation's messages. */
export function pendingEl(item) {
  return h('li', { class: 'msg out pending', tabindex: '-1', dataset: { pending: item.id } },
    h('div', { class: 'msg-row' },
      h('div', { class: 'bubble' },
        vh('You: '),
        item.reply_to ? quoteEl(item.reply_to) : null,
        h('p', { class: 'body', dir: 'auto' }, linkify(item.text)),
        h('div', { class: 'meta' },
          h('span', {
            class: 'state state-waiting',
            title: 'Your X Chat node has not taken this message yet. It is sent as soon as the node is reachable, once.',
          }, icon('clock'), h('span', { class: 'state-text' }, WAITING))))));
}
