// The layout, the conversation list and the empty pane beside it.

import { h, icon, replace, shortWhen, vh } from './dom.js';
import { avatar, conversationName, trustMark } from './people.js';
import { screen } from './screen.js';
import { runSearch } from './search.js';
import { peerOf, state } from './state.js';
import { closeMenu } from './ui.js';

// -- layout -----------------------------------------------------------------------------

export function buildLayout(root, actions) {
  screen.actions = actions;
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
  screen.els = { layout, list, results, search, chat };
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => runSearch(search.value, drawList), 200);
  });
  search.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && search.value) {
      search.value = '';
      runSearch('', drawList);
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
  const els = screen.els;
  const buttons = [...els.layout.querySelectorAll('.side-scroll button')];
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  e.preventDefault();
  const next = buttons[i + (e.key === 'ArrowDown' ? 1 : -1)];
  if (next) next.focus();
  else if (e.key === 'ArrowUp') els.search.focus();
}

export function teardown() {
  screen.view = null;
  screen.els = null;
  closeMenu();
}

/**
 * The pane when no conversation is open. Waiting message requests are named first (a
 * request is a conversation too: "No conversations yet" would hide it), then real,
 * labelled buttons to start a chat or share one's address.
 */
export function renderEmptyChat() {
  const els = screen.els;
  if (!els || screen.view) return;
  const all = [...state.conversations.values()];
  const requests = all.filter((c) => c.state === 'request');
  const others = all.length - requests.length;
  const actions = screen.actions;
  let text;
  if (requests.length) {
    text = requests.length === 1
      ? 'A message request is waiting: someone who is not in your contacts wrote to you.'
      : `${requests.length} message requests are waiting: people who are not in your contacts wrote to you.`;
  } else if (others) {
    text = 'Choose a conversation, or start a new chat.';
  } else {
    text = 'No conversations yet. Start a chat with a contact\'s address, or give yours to the people you want to hear from.';
  }
  replace(els.chat, h('div', { class: 'chat-empty' },
    h('img', { src: 'icon.svg', alt: '', class: 'empty-icon' }),
    h('h2', null, 'X Chat'),
    h('p', null, text),
    requests.length
      ? h('ul', { class: 'request-list', 'aria-label': 'Message requests' }, requests.map((c) => h('li', null,
        h('button', { type: 'button', class: 'request', onclick: () => actions.open(c.id) },
          avatar(peerOf(c.id)),
          h('span', null, `Message request from ${conversationName(c.id)}`)))))
      : null,
    h('div', { class: 'row center' },
      h('button', { type: 'button', class: 'primary', onclick: actions.newChat }, icon('plus'), ' New chat'),
      h('button', { type: 'button', onclick: actions.card }, icon('card'), ' My address'))));
}

// -- the conversation list ------------------------------------------------------------------

let listFrame = 0;
export function renderList() {
  if (listFrame || !screen.els) return;
  listFrame = requestAnimationFrame(() => {
    listFrame = 0;
    if (screen.els) {
      drawList();
      renderEmptyChat();
    }
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
  const els = screen.els;
  const focused = document.activeElement && els.list.contains(document.activeElement)
    ? document.activeElement.dataset.id : null;
  const q = state.search.trim().toLowerCase();
  const fragment = document.createDocumentFragment();
  let total = 0;
  for (const conv of sortedConversations()) {
    total += conv.unread || 0;
    const name = conversationName(conv.id);
    const peer = peerOf(conv.id);
    if (q && !name.toLowerCase().includes(q) && !(conv.npub || '').toLowerCase().includes(q)) continue;
    const current = conv.id === state.current;
    fragment.appendChild(h('li', null,
      h('button', {
        type: 'button', class: 'conv', dataset: { id: conv.id },
        'aria-current': current ? 'true' : null,
        onclick: () => screen.actions.open(conv.id),
      },
      avatar(peer),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-top' },
          h('span', { class: 'conv-name' }, name),
          trustMark(peer),
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
    const again = els.list.querySelector(`button[data-id="${focused}"]`);
    if (again) again.focus();
  }
}
