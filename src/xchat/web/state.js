// What the app knows, in one place, and a few helpers around it.

import { shortKey } from './dom.js';

export const state = {
  session: null,
  identity: null,
  status: null,
  conversations: new Map(), // pubkey -> Conversation (docs/api.md)
  contacts: new Map(), // pubkey -> Contact
  relays: new Map(), // url -> RelayHealth
  settings: { read_receipts: true },
  current: null, // the open conversation's pubkey
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

export function displayName(pubkey) {
  const contact = state.contacts.get(pubkey);
  const conv = state.conversations.get(pubkey);
  const name = (contact && contact.name) || (conv && conv.name);
  if (name) return name;
  const npub = (contact && contact.npub) || (conv && conv.npub);
  return npub ? shortKey(npub) : 'Unknown';
}

export function npubOf(pubkey) {
  const contact = state.contacts.get(pubkey);
  const conv = state.conversations.get(pubkey);
  return (contact && contact.npub) || (conv && conv.npub) || '';
}

/** (sent_at, seq) order, the API's order of a conversation. */
export function before(a, b) {
  return a.sent_at < b.sent_at || (a.sent_at === b.sent_at && a.seq < b.seq);
}

// Drafts: what is typed but not sent, per conversation, kept in this tab's
// sessionStorage so that a reload, a lock or a node restart loses nothing.
export function loadDraft(pubkey) {
  return sessionStorage.getItem(`xchat.draft.${pubkey}`) || '';
}

export function saveDraft(pubkey, text) {
  if (text) sessionStorage.setItem(`xchat.draft.${pubkey}`, text);
  else sessionStorage.removeItem(`xchat.draft.${pubkey}`);
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

export function outboxOf(pubkey) {
  const items = readJson(`${OUTBOX}${pubkey}`, []);
  return Array.isArray(items) ? items : [];
}

function saveOutbox(pubkey, items) {
  if (items.length) sessionStorage.setItem(`${OUTBOX}${pubkey}`, JSON.stringify(items));
  else sessionStorage.removeItem(`${OUTBOX}${pubkey}`);
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

export function relayConnected() {
  const all = [...state.relays.values()];
  const reading = all.filter((r) => r.reading);
  const relevant = reading.length ? reading : all;
  if (!relevant.length) return true; // nothing known yet: no warning
  return relevant.some((r) => r.state === 'connected');
}
