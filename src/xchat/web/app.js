// X Chat Web: the entry point. Reads the login token, walks through setup or unlock,
// then shows the chats and keeps them live over the node's stream.

import { ApiError, OfflineError, Stream, get, hooks, post, takeToken } from './api.js';
import { h, icon, replace } from './dom.js';
import {
  closeConversation, messageActions, openConversation, refreshOpen, trustChanged,
} from './conversation.js';
import { buildLayout, renderList, teardown } from './list.js';
import { renderLocked, renderNoToken, renderSetup } from './onboarding.js';
import { flushOutbox } from './outbox.js';
import {
  applyContact, openCard, openContactInfo, openNewChat, openVerify, refreshContacts,
  refreshConversations, renameContact, setContactState,
} from './panels.js';
import { personName } from './people.js';
import { openSettings, relaysChanged } from './settings.js';
import { markKeyChanged, relayConnected, setConversations, state } from './state.js';
import { applyMessage, applyRead, applyState, incoming, markReadSoon } from './timeline.js';
import { closeMenu, errorText, toast } from './ui.js';

const root = document.getElementById('app');
const banners = document.getElementById('banners');

let mode = 'boot'; // boot | setup | locked | main | ended
let everOnline = false;
let reconnectTimer = 0;
let reconnectDelay = 500;
let reconnectAt = 0;
let countdown = 0;

const stream = new Stream(onEvent, onStreamOpen, onStreamClose);

// -- theme --------------------------------------------------------------------------------

function applyTheme(value = localStorage.getItem('xchat.theme') || 'system') {
  if (value === 'system') {
    localStorage.removeItem('xchat.theme');
    delete document.documentElement.dataset.theme;
  } else {
    localStorage.setItem('xchat.theme', value);
    document.documentElement.dataset.theme = value;
  }
}

// -- banners ---------------------------------------------------------------------------------

const shown = new Map();

function banner(kind, build) {
  let el = shown.get(kind);
  if (!build) {
    if (el) {
      el.remove();
      shown.delete(kind);
    }
    return;
  }
  if (!el) {
    el = h('div', { class: `banner banner-${kind}`, role: 'status' });
    shown.set(kind, el);
    banners.appendChild(el);
  }
  replace(el, build());
}

function offlineBanner() {
  banner('offline', () => {
    const seconds = Math.max(0, Math.ceil((reconnectAt - Date.now()) / 1000));
    return [icon('alert'),
      h('span', null, h('strong', null, 'Offline. '),
        'Can\'t reach your X Chat node. ',
        reconnectTimer ? `Trying again in ${seconds} s. ` : 'Reconnecting… ',
        'Nothing you typed is lost.'),
      h('button', { type: 'button', class: 'small', onclick: () => reconnect() }, 'Retry now')];
  });
}

let relayTimer = 0;
/** No relay connected: messages wait. Shown after a short grace (start-up connects). */
function updateRelayBanner() {
  const bad = mode === 'main' && state.online && !relayConnected();
  if (!bad) {
    clearTimeout(relayTimer);
    relayTimer = 0;
    banner('relays', null);
    return;
  }
  if (shown.has('relays') || relayTimer) return;
  relayTimer = setTimeout(() => {
    relayTimer = 0;
    if (mode === 'main' && state.online && !relayConnected()) {
      banner('relays', () => [icon('alert'),
        h('span', null, h('strong', null, 'Offline: no relay connected. '),
          'Messages you send wait and go out when a relay is back.'),
        h('button', { type: 'button', class: 'small', onclick: () => actions.settings() }, 'Relays')]);
    }
  }, 1500);
}

/** A relay refused our device bundle or relay list: say so until it takes them. */
function updateWarningBanner() {
  const warned = mode === 'main' ? [...state.relays.values()].filter((r) => r.warning) : [];
  if (!warned.length) {
    banner('relay-warning', null);
    return;
  }
  banner('relay-warning', () => [icon('alert'),
    h('span', null, h('strong', null, 'A relay refused your keys. '),
      warned.map((r) => `${r.url} ${r.warning}.`).join(' ')),
    h('button', { type: 'button', class: 'small', onclick: () => actions.settings() }, 'Relays')]);
}

/** Closes every dialog and takes it out of the page at once (its close event comes later). */
function closeDialogs() {
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.close();
    dialog.remove();
  }
}

// -- session ----------------------------------------------------------------------------------

function route(session) {
  state.session = session;
  closeMenu();
  closeDialogs();
  if (session.state === 'unlocked') {
    startMain();
    return;
  }
  stopMain();
  if (session.state === 'setup') {
    mode = 'setup';
    renderSetup(root, route);
  } else {
    mode = 'locked';
    renderLocked(root, route);
  }
}

function stopMain() {
  stream.close();
  state.online = false;
  teardown();
  banner('relays', null);
  banner('relay-warning', null);
}

function ended() {
  stopMain();
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  banner('offline', null);
  mode = 'ended';
  closeDialogs();
  renderNoToken(root, true);
}

hooks.offline = () => {
  if (mode === 'main' && !reconnectTimer && state.online) {
    // a fetch failed although the stream looked open: check now
    stream.close();
    onStreamClose();
  }
};
hooks.locked = () => {
  if (mode === 'main') route({ state: 'locked', npub: null });
};
hooks.unauthorized = () => {
  if (mode !== 'ended') ended();
};

async function boot() {
  applyTheme();
  if (!takeToken()) {
    mode = 'ended';
    renderNoToken(root, false);
    return;
  }
  let session;
  try {
    session = await get('/api/session');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // hooks.unauthorized
    replace(root, h('main', { class: 'onboard' }, h('div', { class: 'onboard-card' },
      h('h1', null, 'Connecting to X Chat…'),
      h('p', null, 'Your node does not answer yet. Is ', h('code', null, 'xchat up'), ' running?'))));
    mode = 'boot';
    scheduleReconnect();
    offlineBanner();
    return;
  }
  route(session);
}

window.addEventListener('hashchange', () => {
  if (/token=/.test(location.hash)) {
    takeToken();
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    banner('offline', null);
    mode = 'boot';
    boot();
  }
});

// -- the main screen -------------------------------------------------------------------------

// What the screens may ask for (screen.actions): the chat modules call these instead of
// importing the dialogs, so that the modules import each other in one direction only.
const actions = {
  ...messageActions,
  open: (id, options) => openConversation(id, options),
  contactInfo: (pk) => openContactInfo(pk),
  rename: (pk) => renameContact(pk),
  verify: (pk) => openVerify(pk),
  setContactState: (pk, value) => setContactState(pk, value),
  card: () => openCard(),
  newChat: () => openNewChat(),
  settings: () => openSettings(actions),
  theme: (value) => applyTheme(value),
  unblock: (pk) => setContactState(pk, 'accepted'),
  lock: async () => {
    stream.close();
    try {
      route(await post('/api/lock'));
    } catch (error) {
      if (!(error instanceof OfflineError)) toast(`X Chat did not lock. ${errorText(error)}`, { error: true });
    }
  },
};

async function startMain() {
  mode = 'main';
  buildLayout(root, actions);
  stream.connect();
  const [conversations, contacts, identity, status, settings] = await Promise.allSettled([
    get('/api/conversations'), get('/api/contacts'), get('/api/identity'), get('/api/status'),
    get('/api/settings'),
  ]);
  if (mode !== 'main') return;
  if (conversations.status === 'fulfilled') setConversations(conversations.value);
  if (contacts.status === 'fulfilled') {
    state.contacts = new Map(contacts.value.map((c) => [c.pubkey, c]));
  }
  if (identity.status === 'fulfilled') state.identity = identity.value;
  if (status.status === 'fulfilled') {
    state.status = status.value;
    state.embedded = status.value.embedded_relay;
    state.relays = new Map(status.value.relays.map((r) => [r.url, r]));
  }
  if (settings.status === 'fulfilled') state.settings = settings.value;
  renderList();
  const last = sessionStorage.getItem('xchat.current');
  if (last && state.conversations.has(last)) openConversation(last);
  else {
    const search = document.getElementById('search');
    if (search) search.focus({ preventScroll: true });
  }
  updateRelayBanner();
  updateWarningBanner();
}

/** After a reconnect: read the current state again (the stream has no replay). */
async function resync() {
  try {
    const [conversations, contacts, status] = await Promise.all([
      get('/api/conversations'), get('/api/contacts'), get('/api/status'),
    ]);
    setConversations(conversations);
    state.contacts = new Map(contacts.map((c) => [c.pubkey, c]));
    state.status = status;
    state.relays = new Map(status.relays.map((r) => [r.url, r]));
    renderList();
    if (state.current && !state.conversations.has(state.current)) closeConversation();
    else refreshOpen();
    updateRelayBanner();
    updateWarningBanner();
    relaysChanged();
  } catch {
    // the next reconnect tries again
  }
}

// -- the stream ---------------------------------------------------------------------------------

function onStreamOpen() {
  const wasOffline = everOnline && !state.online;
  state.online = true;
  everOnline = true;
  reconnectDelay = 500;
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  clearInterval(countdown);
  banner('offline', null);
  if (wasOffline) resync();
  updateRelayBanner();
  flushOutbox(); // what waited for the node goes out now, each message once
}

function onStreamClose() {
  state.online = false;
  updateRelayBanner();
  if (mode !== 'main') return;
  scheduleReconnect();
  offlineBanner();
}

function scheduleReconnect() {
  if (reconnectTimer) return;
  const delay = reconnectDelay * (0.75 + Math.random() * 0.5);
  reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  reconnectAt = Date.now() + delay;
  reconnectTimer = setTimeout(reconnect, delay);
  clearInterval(countdown);
  countdown = setInterval(() => {
    if (shown.has('offline')) offlineBanner();
  }, 1000);
}

async function reconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  if (shown.has('offline')) offlineBanner();
  let session;
  try {
    session = await get('/api/session');
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // ended()
    scheduleReconnect();
    offlineBanner();
    return;
  }
  clearInterval(countdown);
  if (mode === 'main' && session.state === 'unlocked') {
    stream.connect();
    return;
  }
  banner('offline', null);
  route(session);
}

function onEvent(event) {
  switch (event.type) {
    case 'message': {
      const m = event.message;
      const known = state.conversations.has(m.conversation);
      const isNew = applyMessage(m);
      if (!known) refreshConversations().catch(() => {});
      if (!m.outgoing && !m.deleted && (isNew || !known)) incoming(m);
      break;
    }
    case 'state':
      applyState(event);
      renderList();
      break;
    case 'read':
      applyRead(event);
      break;
    case 'contact':
      applyContact(event.contact);
      break;
    case 'device_added':
      // the safety number changed: warn in this tab now; the contact's marks follow
      markKeyChanged(event.pubkey, true);
      state.dismissed.delete(event.pubkey);
      trustChanged(event.pubkey);
      refreshContacts().catch(() => {});
      break;
    case 'resync':
      // the node dropped this tab's backlog (it fell far behind): reload from the API
      resync();
      break;
    case 'relay':
      state.relays.set(event.relay.url, event.relay);
      updateRelayBanner();
      updateWarningBanner();
      relaysChanged();
      break;
    case 'forward_secrecy':
      applyContact(event.contact);
      toast(`Your conversation with ${personName(event.contact.pubkey)} is now forward-secret.`);
      break;
    case 'warning':
      updateWarningBanner();
      break;
    default:
      break;
  }
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && mode === 'main') markReadSoon();
});

window.addEventListener('keydown', (e) => {
  if (mode !== 'main' || document.querySelector('dialog[open]')) return;
  if ((e.ctrlKey || e.metaKey) && (e.key === 'k' || e.key === 'f')) {
    e.preventDefault();
    document.getElementById('search')?.focus();
  }
});

boot();
