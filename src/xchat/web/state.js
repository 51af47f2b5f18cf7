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

export function relayConnected() {
  const all = [...state.relays.values()];
  const reading = all.filter((r) => r.reading);
  const relevant = reading.length ? reading : all;
  if (!relevant.length) return true; // nothing known yet: no warning
  return relevant.some((r) => r.state === 'connected');
}
