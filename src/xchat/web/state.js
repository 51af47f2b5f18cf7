// What the app knows, in one place, and a few helpers around it.

export const state = {
  session: null,
  identity: null,
  status: null,
  conversations: new Map(), // conversation id -> Conversation (docs/api.md)
  contacts: new Map(), // a person's key -> Contact
  relays: new Map(), // url -> RelayHealth
  settings: { read_receipts: true },
  current: null, // the open conversation's id
  online: false, // the stream is connected
  keyChanged: new Set(readJson('xchat.keychange', [])), // contacts whose devices changed
  dismissed: new Set(), // key-change warnings dismissed in this tab
  search: '',
};

function readJson(key, fallback) {
  try {
    const value = JSON.parse(sessionStorage.getItem(key));
    return value ?? fallback;
  } catch {
    return fallback;
  }
}

export function markKeyChanged(pubkey, changed) {
  if (changed) state.keyChanged.add(pubkey);
  else state.keyChanged.delete(pubkey);
  sessionStorage.setItem('xchat.keychange', JSON.stringify([...state.keyChanged]));
}

/** The key of a direct conversation's peer (null for a conversation without one). */
export function peerOf(id) {
  const conv = state.conversations.get(id);
  if (conv) return conv.peer || conv.pubkey || null;
  for (const contact of state.contacts.values()) { // a list read still on its way
    if (contact.conversation === id) return contact.pubkey;
  }
  return null;
}

/** The direct conversation with a contact, by the contact's key. */
export function conversationWith(pubkey) {
  const contact = state.contacts.get(pubkey);
  if (contact && contact.conversation && state.conversations.has(contact.conversation)) return contact.conversation;
  for (const conv of state.conversations.values()) {
    if ((conv.peer || conv.pubkey) === pubkey) return conv.id;
  }
  return (contact && contact.conversation) || null;
}

/** Sets the conversations the node sent: keyed by id. */
export function setConversations(list) {
  state.conversations = new Map(list.map((c) => [c.id, c]));
  adoptPeerKeys();
}

/** (sent_at, seq) order, the API's order of a conversation. */
export function before(a, b) {
  return a.sent_at < b.sent_at || (a.sent_at === b.sent_at && a.seq < b.seq);
}

// Drafts: what is typed but not sent, per conversation id, kept in this tab's
// sessionStorage so that a reload, a lock or a node restart loses nothing.
const DRAFT = 'xchat.draft.';

export function loadDraft(id) {
  return sessionStorage.getItem(`${DRAFT}${id}`) || '';
}

export function saveDraft(id, text) {
  if (text) sessionStorage.setItem(`${DRAFT}${id}`, text);
  else sessionStorage.removeItem(`${DRAFT}${id}`);
}

// The outbox: sends the node has not taken yet, per conversation, kept in this tab's
// sessionStorage. Each has a client_id chosen before the first try, so sending it again
// (after a reload, or when the node is back) can never make a second message.
const OUTBOX = 'xchat.outbox.';

/** A new client id: 16 random bytes as 32 lowercase hex digits (docs/api.md). */
export function newClientId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function outboxOf(id) {
  const items = readJson(`${OUTBOX}${id}`, []);
  return Array.isArray(items) ? items : [];
}

function saveOutbox(id, items) {
  if (items.length) sessionStorage.setItem(`${OUTBOX}${id}`, JSON.stringify(items));
  else sessionStorage.removeItem(`${OUTBOX}${id}`);
}

/** Every waiting send of every conversation, oldest first. */
export function outboxAll() {
  const all = [];
  for (let i = 0; i < sessionStorage.length; i += 1) {
    const key = sessionStorage.key(i);
    if (key && key.startsWith(OUTBOX)) all.push(...outboxOf(key.slice(OUTBOX.length)));
  }
  return all.sort((a, b) => a.at - b.at);
}

export function outboxAdd(item) {
  saveOutbox(item.conversation, [...outboxOf(item.conversation), item]);
}

export function outboxUpdate(item) {
  saveOutbox(item.conversation, outboxOf(item.conversation).map((i) => (i.id === item.id ? item : i)));
}

export function outboxRemove(item) {
  saveOutbox(item.conversation, outboxOf(item.conversation).filter((i) => i.id !== item.id));
}

// What a previous page left in the outbox did not get an answer: it is waiting.
for (const item of outboxAll()) {
  if (!item.waiting) outboxUpdate({ ...item, waiting: true });
}

// Until 0.4 this app kept drafts, its outbox and the open conversation under the peer's
// key (64 hex digits). Once the conversations are known, what a tab kept that way moves to
// the conversation's id: nothing typed before an upgrade is lost. (The node still takes a
// peer's key in the path, so a send made before the move goes to the same conversation.)
const PEER_KEY = /^[0-9a-f]{64}$/;

function adoptPeerKeys() {
  const ids = new Map();
  for (const conv of state.conversations.values()) {
    const peer = conv.peer || conv.pubkey;
    if (peer) ids.set(peer, conv.id);
  }
  const keys = [];
  for (let i = 0; i < sessionStorage.length; i += 1) keys.push(sessionStorage.key(i));
  for (const key of keys) {
    const prefix = key.startsWith(DRAFT) ? DRAFT : key.startsWith(OUTBOX) ? OUTBOX : null;
    const peer = prefix ? key.slice(prefix.length) : '';
    if (!prefix || !PEER_KEY.test(peer) || !ids.has(peer)) continue;
    const id = ids.get(peer);
    if (prefix === DRAFT) {
      const text = [loadDraft(id), loadDraft(peer)].filter(Boolean).join('\n');
      saveDraft(id, text);
    } else {
      saveOutbox(id, [...outboxOf(id), ...outboxOf(peer).map((item) => ({ ...item, conversation: id }))]);
    }
    sessionStorage.removeItem(key);
  }
  const current = sessionStorage.getItem('xchat.current');
  if (current && ids.has(current)) sessionStorage.setItem('xchat.current', ids.get(current));
}

export function relayConnected() {
  const all = [...state.relays.values()];
  const reading = all.filter((r) => r.reading);
  const relevant = reading.length ? reading : all;
  if (!relevant.length) return true; // nothing known yet: no warning
  return relevant.some((r) => r.state === 'connected');
}
