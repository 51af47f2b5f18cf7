// The open conversation: its header, notices, history (paged from the newest) and the
// actions on its messages.
//
// Performance: opening a conversation is one request (the newest 50 messages) and one
// DOM insert of a fragment; older pages load when the top of the history scrolls into
// view. Nothing is fetched per message (a reply's quote is looked up only if its
// original is not loaded).

import { del, get, post } from './api.js';
import { clear, dayKey, h, icon, replace, shortKey } from './dom.js';
import { drawComposer, giveBack, startEdit, startReply } from './composer.js';
import { renderList } from './list.js';
import { messageMenu, renderMessages } from './messages.js';
import { avatar, conversationName, hasName, npubOf, numberChanged, personName } from './people.js';
import { nearBottom, screen, scrollToEnd } from './screen.js';
import { loadDraft, peerOf, saveDraft, state } from './state.js';
import { applyMessage, drawPending, markReadSoon } from './timeline.js';
import { closeMenu, confirmDialog, errorText, openMenu, toast } from './ui.js';

const PAGE = 50;
let viewSerial = 0;

/** The open conversation's name; a blocked peer's conversation has left the list, not the view. */
function titleOf(view) {
  return view.peer ? personName(view.peer) : conversationName(view.id);
}

function keepDraft() {
  const view = screen.view;
  if (view && !view.editing) saveDraft(view.id, view.box.value);
  else if (view) saveDraft(view.id, view.stash || '');
}

export function closeConversation() {
  keepDraft();
  screen.view = null;
  state.current = null;
  sessionStorage.removeItem('xchat.current');
  if (!screen.els) return;
  screen.els.layout.dataset.pane = 'list';
  renderList();
}

export async function openConversation(id, { focus = null } = {}) {
  const els = screen.els;
  if (!els) return;
  keepDraft();
  closeMenu();
  const serial = ++viewSerial;
  state.current = id;
  sessionStorage.setItem('xchat.current', id);
  els.layout.dataset.pane = 'chat';
  const view = makeView(id, serial);
  screen.view = view;
  drawChat();
  renderList();
  let page;
  try {
    page = await loadUntil(id, focus);
  } catch (error) {
    if (serial !== viewSerial) return;
    replace(view.listEl, h('li', { class: 'list-empty' }, `Could not load messages. ${errorText(error)}`));
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
async function loadUntil(id, focus) {
  const base = `/api/conversations/${id}/messages`;
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

function makeView(id, serial) {
  const scroller = h('div', { class: 'messages', tabindex: '0', role: 'log', 'aria-live': 'off', 'aria-label': 'Messages' });
  const listEl = h('ol', { class: 'message-list' }, h('li', { class: 'list-empty' }, 'Loading…'));
  const top = h('div', { class: 'history-top' });
  const pendingEl = h('ol', { class: 'message-list pending-list' });
  scroller.append(top, listEl, pendingEl);
  const box = h('textarea', {
    id: 'message-box', rows: 1, placeholder: 'Write a message', 'aria-label': 'Message',
    autocomplete: 'off', spellcheck: 'true', dir: 'auto',
  });
  box.value = loadDraft(id);
  const peer = peerOf(id);
  return {
    id, peer, serial, scroller, listEl, top, box, pendingEl,
    msgs: new Map(), els: new Map(),
    oldest: null, newest: null, hasMore: false, loading: false, loaded: false,
    replyTo: null, editing: null,
    header: h('header', { class: 'chat-head' }),
    notices: h('div', { class: 'notices' }),
    composer: h('div', { class: 'composer' }),
    jump: null,
    /** Messages here are Olm (X Chat sessions), not plain NIP-17. */
    forwardSecret() {
      const contact = state.contacts.get(peer) || {};
      const conv = state.conversations.get(id) || {};
      return contact.forward_secret ?? conv.forward_secret ?? true;
    },
    /** accepted, request or blocked: the peer's standing. */
    requestState() {
      const contact = state.contacts.get(peer);
      const conv = state.conversations.get(id);
      return (contact && contact.state) || (conv && conv.state) || 'accepted';
    },
  };
}

function drawChat() {
  const v = screen.view;
  const jump = h('button', { type: 'button', class: 'jump', hidden: true, onclick: () => scrollToEnd(true) }, icon('down'), 'New messages');
  v.jump = jump;
  replace(screen.els.chat, v.header, v.notices, h('div', { class: 'messages-wrap' }, v.scroller, jump), v.composer);
  drawHeader();
  drawNotices();
  drawComposer();
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadOlder();
  }, { root: v.scroller, rootMargin: '600px 0px 0px 0px' });
  observer.observe(v.top);
  v.scroller.addEventListener('scroll', () => {
    if (screen.view === v && nearBottom()) jump.hidden = true;
  }, { passive: true });
  v.scroller.addEventListener('keydown', messageKeys);
}

/** The header: the name once (for an unnamed contact, the short address is the name). */
export function drawHeader() {
  const view = screen.view;
  if (!view) return;
  const pk = view.peer;
  const actions = screen.actions;
  const contact = state.contacts.get(pk) || {};
  const name = titleOf(view);
  const verified = contact.verified === true && !numberChanged(pk);
  const blocked = view.requestState() === 'blocked';
  const more = h('button', {
    type: 'button', class: 'icon-button', 'aria-label': 'Conversation menu', 'aria-haspopup': 'menu',
    'aria-expanded': 'false',
    onclick: (e) => openMenu(e.currentTarget, 'Conversation menu', [
      { label: 'Contact details', action: () => actions.contactInfo(pk) },
      { label: 'Rename', action: () => actions.rename(pk) },
      { label: 'Verify safety number', action: () => actions.verify(pk) },
      blocked
        ? { label: 'Unblock', action: () => actions.setContactState(pk, 'accepted') }
        : { label: 'Block', danger: true, action: () => blockContact(pk) },
    ]),
  }, icon('more'));
  replace(view.header,
    h('button', { type: 'button', class: 'icon-button back', 'aria-label': 'Back to conversations', onclick: closeConversation }, icon('back')),
    avatar(pk),
    h('div', { class: 'chat-title' },
      h('h2', { id: 'chat-name' }, name,
        verified ? h('span', { class: 'verified', title: 'You verified this safety number' }, icon('shield'), 'Verified') : null),
      h('div', { class: 'chat-sub' },
        hasName(pk) ? h('span', { class: 'npub', title: npubOf(pk) }, shortKey(npubOf(pk))) : null,
        view.forwardSecret()
          ? h('span', { class: 'badge ok', id: 'forward-secrecy', title: 'X Chat sessions (Olm): a key stolen later cannot decrypt these messages.' }, 'Forward-secret')
          : h('span', {
            class: 'badge warn', id: 'forward-secrecy', title: 'Plain NIP-17 messages: a key stolen later could decrypt them.',
          }, 'Not forward-secret'))),
    h('button', { type: 'button', class: 'ghost verify-button', onclick: () => actions.verify(pk) }, icon('shield'), h('span', { class: 'label' }, 'Verify')),
    more);
}

async function blockContact(pk) {
  const name = screen.view ? titleOf(screen.view) : personName(pk);
  const ok = await confirmDialog(`Block ${name}?`,
    'Blocked contacts cannot message you, and their conversation leaves the list. You can unblock them in Settings.',
    'Block');
  if (ok) screen.actions.setContactState(pk, 'blocked');
}

export function drawNotices() {
  const view = screen.view;
  if (!view) return;
  const pk = view.peer;
  const actions = screen.actions;
  const contact = state.contacts.get(pk) || {};
  const name = titleOf(view);
  const notices = [];
  if (numberChanged(pk) && !state.dismissed.has(pk)) {
    notices.push(h('div', { class: 'notice danger', role: 'alert' },
      icon('alert'),
      h('p', null, h('strong', null, `${name}'s safety number has changed. `),
        'They added a device or reinstalled X Chat, or someone is trying to intercept your messages. ',
        'Verify the new number with them before you share anything sensitive.'),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => actions.verify(pk) }, 'Verify safety number'),
        h('button', { type: 'button', onclick: () => { state.dismissed.add(pk); drawNotices(); } }, 'Dismiss'))));
  }
  if (!view.forwardSecret()) notices.push(forwardSecrecyNotice(name, contact));
  const standing = view.requestState();
  if (standing === 'request') {
    notices.push(h('div', { class: 'notice', role: 'region', 'aria-label': 'Message request' },
      h('p', null, h('strong', null, 'Message request. '),
        `${name} is not in your contacts. Accept to reply and to let them know you got their messages; block to stop hearing from them.`),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', class: 'primary', onclick: () => actions.setContactState(pk, 'accepted') }, 'Accept'),
        h('button', { type: 'button', class: 'danger', onclick: () => blockContact(pk) }, 'Block'))));
  }
  if (standing === 'blocked') {
    notices.push(h('div', { class: 'notice' }, h('p', null, `You blocked ${name}.`),
      h('div', { class: 'notice-actions' },
        h('button', { type: 'button', onclick: () => actions.setContactState(pk, 'accepted') }, 'Unblock'))));
  }
  replace(view.notices, notices);
  view.composer.hidden = standing === 'request' || standing === 'blocked';
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
  if (screen.view && screen.view.peer === pk) {
    drawHeader();
    drawNotices();
  }
}

// -- history --------------------------------------------------------------------------------

/** History scrolled to its top: fetch the page before the oldest loaded message. */
async function loadOlder() {
  const v = screen.view;
  if (!v || !v.loaded || v.loading || !v.hasMore || !v.oldest) return;
  v.loading = true;
  updateTop();
  let page;
  try {
    page = await get(`/api/conversations/${v.id}/messages?limit=${PAGE}&before_sent_at=${v.oldest.sent_at}&before_seq=${v.oldest.seq}`);
  } catch {
    v.loading = false;
    updateTop();
    return;
  }
  if (screen.view !== v) return;
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
  const view = screen.view;
  if (!view) return;
  if (view.loading) replace(view.top, h('p', { class: 'history-note' }, 'Loading older messages…'));
  else if (!view.hasMore && view.loaded) {
    replace(view.top, h('p', { class: 'history-note' }, 'This is the beginning of your conversation with ', titleOf(view), '.'));
  } else clear(view.top);
}

/** After a reconnect: the newest page again, merged into what is shown. */
export async function refreshOpen() {
  const v = screen.view;
  if (!v || !v.loaded) return;
  try {
    const page = await get(`/api/conversations/${v.id}/messages?limit=${PAGE}`);
    if (screen.view !== v) return;
    if (page.length === PAGE && !page.some((m) => v.msgs.has(m.id))) {
      openConversation(v.id); // more arrived than a page while offline: start afresh
      return;
    }
    for (const m of page.reverse()) applyMessage(m);
    markReadSoon();
  } catch {
    // still offline: the next reconnect tries again
  }
}

function messageKeys(e) {
  const view = screen.view;
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

// -- what a message's menu does (screen.actions: messages.js calls them) -----------------

export const messageActions = {
  async react(id, emoji) {
    try {
      applyMessage(await post(`/api/messages/${id}/reactions`, { emoji }));
    } catch (error) {
      toast(`The reaction was not sent. ${errorText(error)}`, { error: true });
    }
  },
  async copy(text) {
    try {
      await navigator.clipboard.writeText(text);
      toast('The text is copied.');
    } catch {
      toast('The text could not be copied: select it and copy it yourself.', { error: true });
    }
  },
  async remove(id) {
    const ok = await confirmDialog('Delete for everyone?', 'The message is removed for you and for the other person.', 'Delete for everyone');
    if (!ok) return;
    try {
      applyMessage(await del(`/api/messages/${id}`));
    } catch (error) {
      toast(`The message was not deleted. ${errorText(error)}`, { error: true });
    }
  },
  async retry(id) {
    try {
      applyMessage(await post(`/api/messages/${id}/retry`));
    } catch (error) {
      toast(`The message was not sent again. ${errorText(error)}`, { error: true });
    }
  },
  jump(id) {
    const li = screen.view && screen.view.els.get(id);
    if (!li) return;
    li.scrollIntoView({ block: 'center', behavior: 'smooth' });
    li.classList.remove('flash');
    void li.offsetWidth;
    li.classList.add('flash');
    li.focus({ preventScroll: true });
  },
  reply: startReply,
  edit: startEdit,
  giveBack,
};
